//! Resolution of the effective 2FA policy of one user (DESIGN.md section 1).
//!
//! One pure function folds host settings, a tenant's feature (the ceiling), a tenant's
//! settings and the user's own flag into one value. The precedence is fixed: a ceiling
//! that is forced or disabled is never contradicted by a lower level, and host settings
//! never reach tenant users. `resolve` allocates nothing, so it can run on every request;
//! the explanation in words is produced on demand by [`EffectivePolicy::trace`].

use serde::{Deserialize, Serialize};

use crate::vocab::{Behaviour, ProviderSet, ScopeSettings, TenantFeature};

/// Where a user lives, with the settings that can reach them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// A host user: only the host settings apply.
    Host { settings: &'a ScopeSettings },
    /// A tenant user: the tenant's feature is a ceiling over the tenant's settings.
    Tenant { feature: TenantFeature, settings: &'a ScopeSettings },
}

/// Everything resolution needs about one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyInput<'a> {
    pub scope: Scope<'a>,
    /// The user's own 2FA switch (`two_factor_enabled`). Kept even when a ceiling
    /// overrides it, so lifting the ceiling restores the user's choice.
    pub user_two_factor_enabled: bool,
}

/// The level whose setting decided whether a second factor is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    HostSettings,
    TenantFeature,
    TenantSettings,
    User,
}

/// Whether the user is a host user or a tenant user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    Host,
    Tenant,
}

/// The resolved policy of one user, with what is needed to explain it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EffectivePolicy {
    /// The behaviour at the deciding scope level.
    pub behaviour: Behaviour,
    /// Whether a second factor is demanded at sign-in.
    pub required: bool,
    pub decided_by: DecidedBy,
    /// Whether the user may flip their own switch.
    pub user_can_change: bool,
    /// Whether an admin may set the user's switch.
    pub admin_can_override: bool,
    pub remember_browser_allowed: bool,
    pub remember_browser_days: u32,
    pub enrollment_grace_days: u32,
    pub allowed_providers: ProviderSet,
    pub scope: ScopeKind,
    /// The tenant's ceiling, for tenant users.
    pub tenant_feature: Option<Behaviour>,
    pub user_two_factor_enabled: bool,
}

/// Resolves the effective policy of one user.
pub fn resolve(input: &PolicyInput<'_>) -> EffectivePolicy {
    let (scope, tenant_feature, settings, behaviour, level) = match input.scope {
        Scope::Host { settings } => (ScopeKind::Host, None, settings, settings.behaviour, DecidedBy::HostSettings),
        Scope::Tenant { feature, settings } => match feature.behaviour {
            ceiling @ (Behaviour::Forced | Behaviour::Disabled) => {
                (ScopeKind::Tenant, Some(ceiling), settings, ceiling, DecidedBy::TenantFeature)
            }
            Behaviour::Optional => {
                (ScopeKind::Tenant, Some(Behaviour::Optional), settings, settings.behaviour, DecidedBy::TenantSettings)
            }
        },
    };
    let flag = input.user_two_factor_enabled;
    let (required, decided_by, user_can_change, admin_can_override) = match behaviour {
        Behaviour::Forced => (true, level, false, false),
        Behaviour::Disabled => (false, level, false, false),
        Behaviour::Optional => (flag, DecidedBy::User, settings.users_can_change, true),
    };
    EffectivePolicy {
        behaviour,
        required,
        decided_by,
        user_can_change,
        admin_can_override,
        remember_browser_allowed: required && settings.remember_browser,
        remember_browser_days: settings.remember_browser_days,
        enrollment_grace_days: settings.enrollment_grace_days,
        allowed_providers: settings.allowed_providers,
        scope,
        tenant_feature,
        user_two_factor_enabled: flag,
    }
}

impl EffectivePolicy {
    /// The explanation in plain words, one sentence per level that was consulted, in
    /// the order resolution consulted them.
    pub fn trace(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(4);
        match (self.scope, self.tenant_feature) {
            (ScopeKind::Host, _) | (ScopeKind::Tenant, None) => out.push(format!(
                "This is a host user, so the host settings apply; they make two-factor sign-in {}.",
                self.behaviour.as_str()
            )),
            (ScopeKind::Tenant, Some(ceiling @ (Behaviour::Forced | Behaviour::Disabled))) => {
                out.push(format!(
                    "The host has set this tenant's two-factor feature to {}; that ceiling decides and the tenant's own settings cannot override it.",
                    ceiling.as_str()
                ))
            }
            (ScopeKind::Tenant, Some(Behaviour::Optional)) => {
                out.push(
                    "The host leaves two-factor sign-in optional for this tenant, so the tenant's own settings apply.".to_owned(),
                );
                out.push(format!(
                    "The tenant's settings make two-factor sign-in {}.",
                    self.behaviour.as_str()
                ));
            }
        }
        let flag = if self.user_two_factor_enabled { "on" } else { "off" };
        match self.behaviour {
            Behaviour::Forced => out.push(
                "A second factor is required for every sign-in; the user's own switch does not matter.".to_owned(),
            ),
            Behaviour::Disabled => {
                out.push(format!("No second factor is asked; the user's own switch ({flag}) is kept but ignored."))
            }
            Behaviour::Optional => {
                out.push(format!(
                    "The user's own switch is {flag}, so a second factor is {}.",
                    if self.required { "required" } else { "not required" }
                ));
                out.push(if self.user_can_change {
                    "The user may change the switch; an admin may too.".to_owned()
                } else {
                    "Only an admin may change the switch; users cannot.".to_owned()
                });
            }
        }
        if self.required {
            out.push(if self.remember_browser_allowed {
                format!(
                    "A browser may be remembered for {} days to skip the second factor.",
                    self.remember_browser_days
                )
            } else {
                "Remembering a browser is not allowed; every sign-in asks for the second factor.".to_owned()
            });
        }
        out
    }

    /// One sentence for an end user's account page.
    pub fn summary(&self) -> String {
        match (self.decided_by, self.behaviour, self.required) {
            (DecidedBy::TenantFeature, Behaviour::Forced, _) | (DecidedBy::TenantSettings, Behaviour::Forced, _) => {
                "Your organisation requires two-factor sign-in.".to_owned()
            }
            (DecidedBy::HostSettings, Behaviour::Forced, _) => {
                "This platform requires two-factor sign-in for host users.".to_owned()
            }
            (_, Behaviour::Disabled, _) => {
                "Two-factor sign-in is turned off for your account's organisation.".to_owned()
            }
            (_, _, true) => "Two-factor sign-in is on for your account.".to_owned(),
            (_, _, false) => "Two-factor sign-in is off for your account.".to_owned(),
        }
    }
}
