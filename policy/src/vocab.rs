//! The vocabulary of 2FA policy: behaviours, the settings of a scope (the host or one
//! tenant), the per-tenant feature (the ceiling) and the second-factor providers.

use serde::{Deserialize, Serialize};

/// How a scope treats the second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Each user's own flag decides.
    #[default]
    Optional,
    /// No second factor is asked, whatever a user's flag says.
    Disabled,
    /// Every user must present a second factor.
    Forced,
}

impl Behaviour {
    pub const ALL: [Behaviour; 3] = [Behaviour::Optional, Behaviour::Disabled, Behaviour::Forced];

    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::Optional => "optional",
            Behaviour::Disabled => "disabled",
            Behaviour::Forced => "forced",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.as_str() == s)
    }
}

/// A second-factor provider a user may be offered at sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Authenticator,
    Email,
    Sms,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Authenticator, Provider::Email, Provider::Sms];

    /// Email and SMS codes travel through channels an attacker can often read or
    /// redirect (NIST SP 800-63B-4 does not accept email and restricts SMS), so they are
    /// offered but always labelled as weaker.
    pub fn is_weaker(self) -> bool {
        !matches!(self, Provider::Authenticator)
    }
}

/// How much a factor proves, weakest first (DESIGN.md section 5). The derived order is
/// the order of strength, so `max` picks the stronger of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    /// A code sent by email or SMS: the channel may be read or redirected by others.
    OutOfBand,
    /// A code from an authenticator app (or a recovery code, which opens the door up to
    /// this strength).
    App,
    /// A passkey with user verification.
    PhishingResistant,
}

impl Strength {
    pub fn as_str(self) -> &'static str {
        match self {
            Strength::OutOfBand => "out_of_band",
            Strength::App => "app",
            Strength::PhishingResistant => "phishing_resistant",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Strength::OutOfBand, Strength::App, Strength::PhishingResistant].into_iter().find(|x| x.as_str() == s)
    }
}

impl Provider {
    pub fn strength(self) -> Strength {
        match self {
            Provider::Authenticator => Strength::App,
            Provider::Email | Provider::Sms => Strength::OutOfBand,
        }
    }
}

/// Which providers a scope allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProviderSet {
    pub authenticator: bool,
    pub email: bool,
    pub sms: bool,
}

impl Default for ProviderSet {
    fn default() -> Self {
        Self { authenticator: true, email: true, sms: true }
    }
}

impl ProviderSet {
    pub fn allows(&self, p: Provider) -> bool {
        match p {
            Provider::Authenticator => self.authenticator,
            Provider::Email => self.email,
            Provider::Sms => self.sms,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Provider> + '_ {
        Provider::ALL.into_iter().filter(|p| self.allows(*p))
    }
}

/// Upper bound for how long a browser may be remembered. A year is already generous
/// for a second-factor bypass token; longer values are almost always typos.
pub const MAX_REMEMBER_BROWSER_DAYS: u32 = 365;
/// Upper bound for an enrolment grace period.
pub const MAX_ENROLLMENT_GRACE_DAYS: u32 = 90;

/// The 2FA settings of one scope: the host (for host users) or one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScopeSettings {
    pub behaviour: Behaviour,
    pub users_can_change: bool,
    pub remember_browser: bool,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 365))]
    pub remember_browser_days: u32,
    #[cfg_attr(feature = "openapi", schema(maximum = 90))]
    pub enrollment_grace_days: u32,
    pub allowed_providers: ProviderSet,
}

impl Default for ScopeSettings {
    fn default() -> Self {
        Self {
            behaviour: Behaviour::Optional,
            users_can_change: true,
            remember_browser: true,
            remember_browser_days: 14,
            enrollment_grace_days: 0,
            allowed_providers: ProviderSet::default(),
        }
    }
}

/// Why a set of scope settings cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("remember_browser_days must be between 1 and {MAX_REMEMBER_BROWSER_DAYS}")]
    RememberBrowserDays,
    #[error("enrollment_grace_days must be between 0 and {MAX_ENROLLMENT_GRACE_DAYS}")]
    EnrollmentGraceDays,
    #[error("at least one provider must be allowed")]
    NoProvider,
}

impl SettingsError {
    /// The field the error is about, so a form can show it beside that field.
    pub fn field(&self) -> &'static str {
        match self {
            SettingsError::RememberBrowserDays => "remember_browser_days",
            SettingsError::EnrollmentGraceDays => "enrollment_grace_days",
            SettingsError::NoProvider => "allowed_providers",
        }
    }
}

impl ScopeSettings {
    /// The one validation both the server and the web app run before a save.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !(1..=MAX_REMEMBER_BROWSER_DAYS).contains(&self.remember_browser_days) {
            return Err(SettingsError::RememberBrowserDays);
        }
        if self.enrollment_grace_days > MAX_ENROLLMENT_GRACE_DAYS {
            return Err(SettingsError::EnrollmentGraceDays);
        }
        if self.allowed_providers.iter().next().is_none() {
            return Err(SettingsError::NoProvider);
        }
        Ok(())
    }
}

/// The 2FA feature of one tenant, set by a host admin: a ceiling over the tenant's own
/// settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TenantFeature {
    pub behaviour: Behaviour,
}
