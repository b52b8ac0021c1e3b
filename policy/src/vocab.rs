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
    /// A WebAuthn credential with user verification.
    Passkey,
}

impl Provider {
    pub const ALL: [Provider; 4] = [Provider::Authenticator, Provider::Email, Provider::Sms, Provider::Passkey];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Authenticator => "authenticator",
            Provider::Email => "email",
            Provider::Sms => "sms",
            Provider::Passkey => "passkey",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Email and SMS codes travel through channels an attacker can often read or
    /// redirect (NIST SP 800-63B-4 does not accept email and restricts SMS), so they are
    /// offered but always labelled as weaker.
    pub fn is_weaker(self) -> bool {
        matches!(self, Provider::Email | Provider::Sms)
    }
}

/// How much a factor proves, weakest first (DESIGN.md section 5). The derived order is
/// the order of strength, so `max` picks the stronger of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    /// A code sent by email or SMS: the channel may be read or redirected by others.
    #[default]
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

    pub const ALL: [Strength; 3] = [Strength::OutOfBand, Strength::App, Strength::PhishingResistant];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl Provider {
    pub fn strength(self) -> Strength {
        match self {
            Provider::Authenticator => Strength::App,
            Provider::Email | Provider::Sms => Strength::OutOfBand,
            Provider::Passkey => Strength::PhishingResistant,
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
    /// Absent in a request means allowed, as for a scope that never saved settings.
    #[serde(default = "allowed")]
    pub passkey: bool,
}

fn allowed() -> bool {
    true
}

impl Default for ProviderSet {
    fn default() -> Self {
        Self { authenticator: true, email: true, sms: true, passkey: true }
    }
}

impl ProviderSet {
    pub fn allows(&self, p: Provider) -> bool {
        match p {
            Provider::Authenticator => self.authenticator,
            Provider::Email => self.email,
            Provider::Sms => self.sms,
            Provider::Passkey => self.passkey,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Provider> + '_ {
        Provider::ALL.into_iter().filter(|p| self.allows(*p))
    }

    /// The providers of this set whose factors are at least `strength`.
    pub fn at_least(&self, strength: Strength) -> ProviderSet {
        let keep = |p: Provider| self.allows(p) && p.strength() >= strength;
        ProviderSet {
            authenticator: keep(Provider::Authenticator),
            email: keep(Provider::Email),
            sms: keep(Provider::Sms),
            passkey: keep(Provider::Passkey),
        }
    }

    /// The strongest factor any provider of this set gives; `None` for an empty set.
    pub fn strongest(&self) -> Option<Strength> {
        self.iter().map(Provider::strength).max()
    }
}

/// Upper bound for how long a browser may be remembered. A year is already generous
/// for a second-factor bypass token; longer values are almost always typos.
pub const MAX_REMEMBER_BROWSER_DAYS: u32 = 365;
/// Upper bound for an enrolment grace period.
pub const MAX_ENROLLMENT_GRACE_DAYS: u32 = 90;

/// Most entries of `sms_allowed_country_codes`; there are fewer than 300 country
/// calling codes, so a longer list can only hold mistakes.
pub const MAX_SMS_COUNTRY_CODES: usize = 300;

/// The 2FA settings of one scope: the host (for host users) or one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// Country calling codes (E.164, digits only: `1` for North America, `44` for the
    /// United Kingdom) of the phone numbers that may receive texts; empty allows every
    /// country. Absent in a request means empty.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 300))]
    pub sms_allowed_country_codes: Vec<String>,
    /// The weakest factor the scope accepts (DESIGN.md section 5): providers below it
    /// are not offered. Absent in a request means `out_of_band`.
    #[serde(default)]
    pub min_strength: Strength,
    /// The authenticator models (AAGUIDs, lowercase hyphenated UUIDs) whose passkeys
    /// users may enrol; empty accepts any. Absent in a request means empty.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 100))]
    pub passkey_aaguids: Vec<String>,
}

/// Most entries of `passkey_aaguids`.
pub const MAX_PASSKEY_AAGUIDS: usize = 100;

impl Default for ScopeSettings {
    fn default() -> Self {
        Self {
            behaviour: Behaviour::Optional,
            users_can_change: true,
            remember_browser: true,
            remember_browser_days: 14,
            enrollment_grace_days: 0,
            allowed_providers: ProviderSet::default(),
            sms_allowed_country_codes: Vec::new(),
            min_strength: Strength::OutOfBand,
            passkey_aaguids: Vec::new(),
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
    #[error(
        "sms_allowed_country_codes: {0:?} is not a country calling code (digits only, as in E.164: 1 for North America, 44 for the United Kingdom)"
    )]
    NotACallingCode(String),
    #[error("sms_allowed_country_codes names {0} twice")]
    DuplicateCallingCode(String),
    #[error("sms_allowed_country_codes holds at most {MAX_SMS_COUNTRY_CODES} codes")]
    TooManyCallingCodes,
    #[error("min_strength {0} cannot be met: no allowed provider gives a factor that strong")]
    StrengthUnreachable(&'static str),
    #[error("passkey_aaguids: {0:?} is not an AAGUID (a lowercase UUID such as 00000000-0000-0000-0000-000000000000)")]
    NotAnAaguid(String),
    #[error("passkey_aaguids holds at most {MAX_PASSKEY_AAGUIDS} entries, each once")]
    TooManyAaguids,
}

impl SettingsError {
    /// The field the error is about, so a form can show it beside that field.
    pub fn field(&self) -> &'static str {
        match self {
            SettingsError::RememberBrowserDays => "remember_browser_days",
            SettingsError::EnrollmentGraceDays => "enrollment_grace_days",
            SettingsError::NoProvider => "allowed_providers",
            SettingsError::NotACallingCode(_)
            | SettingsError::DuplicateCallingCode(_)
            | SettingsError::TooManyCallingCodes => "sms_allowed_country_codes",
            SettingsError::StrengthUnreachable(_) => "min_strength",
            SettingsError::NotAnAaguid(_) | SettingsError::TooManyAaguids => "passkey_aaguids",
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
        let codes = &self.sms_allowed_country_codes;
        if codes.len() > MAX_SMS_COUNTRY_CODES {
            return Err(SettingsError::TooManyCallingCodes);
        }
        for (i, code) in codes.iter().enumerate() {
            if !is_calling_code(code) {
                return Err(SettingsError::NotACallingCode(code.chars().take(8).collect()));
            }
            if codes[..i].contains(code) {
                return Err(SettingsError::DuplicateCallingCode(code.clone()));
            }
        }
        if self.allowed_providers.strongest().is_none_or(|s| s < self.min_strength) {
            return Err(SettingsError::StrengthUnreachable(self.min_strength.as_str()));
        }
        let aaguids = &self.passkey_aaguids;
        if aaguids.len() > MAX_PASSKEY_AAGUIDS {
            return Err(SettingsError::TooManyAaguids);
        }
        for (i, id) in aaguids.iter().enumerate() {
            if !is_aaguid(id) {
                return Err(SettingsError::NotAnAaguid(id.chars().take(40).collect()));
            }
            if aaguids[..i].contains(id) {
                return Err(SettingsError::TooManyAaguids);
            }
        }
        Ok(())
    }

    /// Whether a passkey from the authenticator model `aaguid` may be enrolled here.
    pub fn passkey_model_allowed(&self, aaguid: &str) -> bool {
        self.passkey_aaguids.is_empty() || self.passkey_aaguids.iter().any(|a| a == aaguid)
    }

    /// Whether a text may go to `phone` (E.164, `+` and digits) under these settings.
    pub fn sms_allowed_to(&self, phone: &str) -> bool {
        if self.sms_allowed_country_codes.is_empty() {
            return true;
        }
        calling_code(phone).is_some_and(|code| self.sms_allowed_country_codes.iter().any(|c| c == code))
    }
}

/// The two-digit country calling codes of E.164 (ITU-T). `1` and `7` are the only
/// one-digit codes, and every code not listed here or there has three digits; so the
/// codes are prefix-free and the code of a number can be read off its first digits.
const TWO_DIGIT_CALLING_CODES: [&str; 44] = [
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47", "48", "49", "51",
    "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65", "66", "81", "82", "84", "86", "90",
    "91", "92", "93", "94", "95", "98",
];

/// The country calling code that `number` starts with (a leading `+` is skipped), or
/// `None` when it does not start with one.
pub fn calling_code(number: &str) -> Option<&str> {
    let digits = number.strip_prefix('+').unwrap_or(number);
    let len = match digits.as_bytes() {
        [b'1' | b'7', ..] => 1,
        [b'2'..=b'9', b'0'..=b'9', ..] if TWO_DIGIT_CALLING_CODES.contains(&&digits[..2]) => 2,
        [b'2'..=b'9', b'0'..=b'9', b'0'..=b'9', ..] => 3,
        _ => return None,
    };
    Some(&digits[..len])
}

/// Whether `s` is an AAGUID written as a lowercase hyphenated UUID (8-4-4-4-12).
pub fn is_aaguid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

/// Whether `code` is exactly a country calling code (digits only, no `+`).
pub fn is_calling_code(code: &str) -> bool {
    !code.starts_with('+') && calling_code(code) == Some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calling_codes_are_read_off_the_first_digits() {
        assert_eq!(calling_code("+14155550100"), Some("1"));
        assert_eq!(calling_code("+447700900123"), Some("44"));
        assert_eq!(calling_code("+79161234567"), Some("7"));
        assert_eq!(calling_code("+35312345678"), Some("353"));
        assert_eq!(calling_code("+8821234567"), Some("882"));
        assert_eq!(calling_code("+0123"), None);
        assert_eq!(calling_code("+"), None);
        assert_eq!(calling_code("+3"), None);
    }

    #[test]
    fn only_whole_codes_are_codes() {
        for good in ["1", "7", "44", "49", "353", "979", "882"] {
            assert!(is_calling_code(good), "{good}");
        }
        for bad in ["", "0", "4", "35", "12", "440", "+44", "044", "4a", "1234", "x"] {
            assert!(!is_calling_code(bad), "{bad}");
        }
    }

    #[test]
    fn texts_follow_the_allowed_countries() {
        let mut s = ScopeSettings::default();
        assert!(s.sms_allowed_to("+447700900123"));
        s.sms_allowed_country_codes = vec!["1".into(), "44".into()];
        assert!(s.validate().is_ok());
        assert!(s.sms_allowed_to("+447700900123"));
        assert!(s.sms_allowed_to("+14155550100"));
        assert!(!s.sms_allowed_to("+4915112345678"));
        assert!(!s.sms_allowed_to("+8821234567"));
        s.sms_allowed_country_codes.push("4".into());
        assert_eq!(s.validate().map_err(|e| e.field()), Err("sms_allowed_country_codes"));
        s.sms_allowed_country_codes = vec!["44".into(), "44".into()];
        assert_eq!(s.validate(), Err(SettingsError::DuplicateCallingCode("44".into())));
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
