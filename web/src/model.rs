//! Browser-free decisions of the app: which admin scope a signed-in user steers, which
//! navigation entries they see, and how the settings form's text fields become
//! [`ScopeSettings`]. Kept apart from the views so they are unit-tested natively.

use twofold_policy::vocab::{
    Behaviour, MAX_ENROLLMENT_GRACE_DAYS, MAX_REMEMBER_BROWSER_DAYS, MAX_SMS_COUNTRY_CODES, ProviderSet, ScopeSettings,
    SettingsError,
};
use twofold_policy::wire::CurrentUser;

/// The role names of [`twofold_policy::wire::RoleGrant::role`].
pub const ROLE_HOST_ADMIN: &str = "host_admin";
pub const ROLE_TENANT_ADMIN: &str = "tenant_admin";

/// What an admin administers: the host (its settings, users and the tenants), or one
/// tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminScope {
    Host,
    Tenant { id: String, name: Option<String> },
}

impl AdminScope {
    /// The API path of the scope: `/api/host` or `/api/tenants/{id}`.
    pub fn api_base(&self) -> String {
        match self {
            AdminScope::Host => "/api/host".to_owned(),
            // Tenant ids are UUIDs: nothing in them needs escaping in a path.
            AdminScope::Tenant { id, .. } => format!("/api/tenants/{id}"),
        }
    }

    /// The `tenant_id` to pass to `/api/audit`: the host admin sees every scope.
    pub fn audit_filter(&self) -> Option<&str> {
        match self {
            AdminScope::Host => None,
            AdminScope::Tenant { id, .. } => Some(id),
        }
    }
}

pub fn is_host_admin(u: &CurrentUser) -> bool {
    u.roles.iter().any(|r| r.role == ROLE_HOST_ADMIN && r.tenant_id.is_none())
}

/// The scope the user administers, if any. A host admin steers the host; a tenant
/// admin steers their own tenant (the one they belong to, or failing that the first
/// tenant they were granted).
pub fn admin_scope(u: &CurrentUser) -> Option<AdminScope> {
    if is_host_admin(u) {
        return Some(AdminScope::Host);
    }
    let granted: Vec<&str> =
        u.roles.iter().filter(|r| r.role == ROLE_TENANT_ADMIN).filter_map(|r| r.tenant_id.as_deref()).collect();
    let own = u.tenant_id.as_deref().filter(|t| granted.contains(t));
    let id = own.or_else(|| granted.first().copied())?;
    // Headings name the tenant as the host's screens do: by its display name.
    let name = if Some(id) == u.tenant_id.as_deref() {
        u.tenant_display_name.clone().or_else(|| u.tenant_name.clone())
    } else {
        None
    };
    Some(AdminScope::Tenant { id: id.to_owned(), name })
}

/// A navigation entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Account,
    Settings,
    Tenants,
    Users,
    Groups,
    Adoption,
    Applications,
    Audit,
}

impl Nav {
    pub fn href(self) -> &'static str {
        match self {
            Nav::Account => "/account",
            Nav::Settings => "/settings",
            Nav::Tenants => "/tenants",
            Nav::Users => "/users",
            Nav::Groups => "/groups",
            Nav::Adoption => "/adoption",
            Nav::Applications => "/applications",
            Nav::Audit => "/audit",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Nav::Account => "Account",
            Nav::Settings => "Settings",
            Nav::Tenants => "Tenants",
            Nav::Users => "Users",
            Nav::Groups => "Groups",
            Nav::Adoption => "Adoption",
            Nav::Applications => "Applications",
            Nav::Audit => "Audit",
        }
    }

    pub fn id(self) -> &'static str {
        use crate::ids;
        match self {
            Nav::Account => ids::NAV_ACCOUNT,
            Nav::Settings => ids::NAV_SETTINGS,
            Nav::Tenants => ids::NAV_TENANTS,
            Nav::Users => ids::NAV_USERS,
            Nav::Groups => ids::NAV_GROUPS,
            Nav::Adoption => ids::NAV_ADOPTION,
            Nav::Applications => ids::NAV_APPLICATIONS,
            Nav::Audit => ids::NAV_AUDIT,
        }
    }
}

/// The entries a user may use: everybody has their account; admins get their scope's
/// settings, users and audit; only the host admin gets tenants.
pub fn nav_for(u: &CurrentUser) -> Vec<Nav> {
    match admin_scope(u) {
        None => vec![Nav::Account],
        Some(AdminScope::Host) => {
            vec![
                Nav::Account,
                Nav::Settings,
                Nav::Tenants,
                Nav::Users,
                Nav::Groups,
                Nav::Adoption,
                Nav::Applications,
                Nav::Audit,
            ]
        }
        Some(AdminScope::Tenant { .. }) => {
            vec![Nav::Account, Nav::Settings, Nav::Users, Nav::Groups, Nav::Adoption, Nav::Applications, Nav::Audit]
        }
    }
}

/// Where to go after signing in: the page the user asked for, if it is one of ours.
/// Anything else (another origin, `//host`, the sign-in page itself) falls back to the
/// account page, so a crafted link cannot bounce a fresh session elsewhere.
pub fn after_sign_in(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") && !n.starts_with("/sign-in") =>
        {
            n.to_owned()
        }
        _ => "/account".to_owned(),
    }
}

/// The document title for a path: each page its own, so tabs, history and bookmarks
/// tell the pages apart.
pub fn page_title(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let page = match segments.as_slice() {
        [] => return "Twofold".to_owned(),
        ["sign-in"] => "Sign in",
        ["forgot-password"] => "Forgot password",
        ["reset-password"] => "New password",
        ["account"] => "Account",
        ["settings"] => "Settings",
        ["tenants"] => "Tenants",
        ["tenants", _, "users"] => "Tenant users",
        ["users"] => "Users",
        ["groups"] => "Groups",
        ["adoption"] => "Adoption",
        ["applications"] => "Applications",
        ["audit"] => "Audit trail",
        _ => "Page not found",
    };
    format!("{page} · Twofold")
}

/// The settings form as typed: the day counts are text until they parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsDraft {
    pub behaviour: Behaviour,
    pub users_can_change: bool,
    pub remember_browser: bool,
    pub remember_browser_days: String,
    pub enrollment_grace_days: String,
    pub allowed_providers: ProviderSet,
    /// Country calling codes as typed: separated by commas or spaces, `+` optional.
    pub sms_allowed_country_codes: String,
    pub min_strength: twofold_policy::Strength,
    /// Authenticator models (AAGUIDs) as typed: separated by commas or spaces.
    pub passkey_aaguids: String,
}

/// A problem with one field of the settings form, to show beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// The [`ScopeSettings`] field name (as in the API's `ErrorBody::field`).
    pub field: &'static str,
    pub message: String,
}

impl From<&ScopeSettings> for SettingsDraft {
    fn from(s: &ScopeSettings) -> Self {
        Self {
            behaviour: s.behaviour,
            users_can_change: s.users_can_change,
            remember_browser: s.remember_browser,
            remember_browser_days: s.remember_browser_days.to_string(),
            enrollment_grace_days: s.enrollment_grace_days.to_string(),
            allowed_providers: s.allowed_providers,
            sms_allowed_country_codes: s.sms_allowed_country_codes.join(", "),
            min_strength: s.min_strength,
            passkey_aaguids: s.passkey_aaguids.join(", "),
        }
    }
}

/// AAGUIDs as people paste them: separated by commas or spaces, any case.
pub fn parse_aaguids(typed: &str) -> Vec<String> {
    typed
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// `+1, 44 49` -> `["1", "44", "49"]`: how people write a list of calling codes.
pub fn parse_country_codes(typed: &str) -> Vec<String> {
    typed
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .map(|c| c.strip_prefix('+').unwrap_or(c))
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The day fields are text inputs, not number inputs: a number input shows a typed
/// minus sign or letter but reports an empty value, so the mistake would vanish
/// unexplained. Here every such input gets its own sentence.
fn parse_days(field: &'static str, s: &str) -> Result<u32, FieldProblem> {
    let t = s.trim();
    let problem = |message: &str| FieldProblem { field, message: message.to_owned() };
    if t.is_empty() {
        return Err(problem("Enter a number of days."));
    }
    if t.starts_with('-') && t[1..].chars().all(|c| c.is_ascii_digit()) && t.len() > 1 {
        return Err(problem("A number of days cannot be negative."));
    }
    t.parse::<u32>().map_err(|_| problem("Enter a whole number of days, in digits only."))
}

/// The validation error in the words of the form (the error's own text names the API
/// field, which means nothing to someone filling in the form).
pub fn settings_problem(e: &SettingsError) -> String {
    match e {
        SettingsError::RememberBrowserDays => {
            format!("Choose between 1 and {MAX_REMEMBER_BROWSER_DAYS} days.")
        }
        SettingsError::EnrollmentGraceDays => format!("Choose between 0 and {MAX_ENROLLMENT_GRACE_DAYS} days."),
        SettingsError::NoProvider => "Allow at least one second factor.".to_owned(),
        SettingsError::NotACallingCode(c) => {
            format!("{c} is not a country calling code. Write codes like 1 (North America) or 44 (United Kingdom).")
        }
        SettingsError::DuplicateCallingCode(c) => format!("{c} is listed twice."),
        SettingsError::TooManyCallingCodes => format!("List at most {MAX_SMS_COUNTRY_CODES} country codes."),
        SettingsError::StrengthUnreachable(_) => {
            "None of the allowed second factors is that strong: allow passkeys, or choose a lower minimum.".to_owned()
        }
        SettingsError::NotAnAaguid(a) => {
            format!("{a} is not an AAGUID (a UUID such as cb69481e-8ff7-4039-93ec-0a2729a154a8).")
        }
        SettingsError::TooManyAaguids => "List each authenticator model once, at most 100.".to_owned(),
    }
}

impl SettingsDraft {
    /// The settings to send, checked with the same validation the server runs.
    pub fn to_settings(&self) -> Result<ScopeSettings, FieldProblem> {
        let s = ScopeSettings {
            behaviour: self.behaviour,
            users_can_change: self.users_can_change,
            remember_browser: self.remember_browser,
            remember_browser_days: parse_days("remember_browser_days", &self.remember_browser_days)?,
            enrollment_grace_days: parse_days("enrollment_grace_days", &self.enrollment_grace_days)?,
            allowed_providers: self.allowed_providers,
            sms_allowed_country_codes: parse_country_codes(&self.sms_allowed_country_codes),
            min_strength: self.min_strength,
            passkey_aaguids: parse_aaguids(&self.passkey_aaguids),
        };
        s.validate().map_err(|e| FieldProblem { field: e.field(), message: settings_problem(&e) })?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use twofold_policy::wire::RoleGrant;

    use super::*;

    fn user(tenant: Option<&str>, roles: &[(&str, Option<&str>)]) -> CurrentUser {
        CurrentUser {
            id: "u1".to_owned(),
            username: "alice".to_owned(),
            tenant_id: tenant.map(str::to_owned),
            tenant_name: tenant.map(|_| "acme".to_owned()),
            tenant_display_name: tenant.map(|_| "Acme Ltd".to_owned()),
            roles: roles
                .iter()
                .map(|(r, t)| RoleGrant { role: (*r).to_owned(), tenant_id: t.map(str::to_owned) })
                .collect(),
            must_change_password: false,
        }
    }

    #[test]
    fn navigation_follows_roles() {
        assert_eq!(nav_for(&user(None, &[])), vec![Nav::Account]);
        assert_eq!(nav_for(&user(None, &[("host_admin", None)])).len(), 8);
        let ta = user(Some("t1"), &[("tenant_admin", Some("t1"))]);
        assert_eq!(
            nav_for(&ta),
            vec![Nav::Account, Nav::Settings, Nav::Users, Nav::Groups, Nav::Adoption, Nav::Applications, Nav::Audit]
        );
        assert_eq!(
            admin_scope(&ta),
            Some(AdminScope::Tenant { id: "t1".to_owned(), name: Some("Acme Ltd".to_owned()) })
        );
        assert_eq!(nav_for(&user(Some("t1"), &[("user", Some("t1"))])), vec![Nav::Account]);
    }

    #[test]
    fn each_page_has_its_own_title() {
        assert_eq!(page_title("/"), "Twofold");
        assert_eq!(page_title("/sign-in"), "Sign in · Twofold");
        assert_eq!(page_title("/settings"), "Settings · Twofold");
        assert_eq!(page_title("/groups"), "Groups · Twofold");
        assert_eq!(page_title("/applications"), "Applications · Twofold");
        assert_eq!(page_title("/adoption"), "Adoption · Twofold");
        assert_eq!(page_title("/settings/"), "Settings · Twofold");
        assert_eq!(page_title("/tenants/t1/users"), "Tenant users · Twofold");
        assert_eq!(page_title("/audit"), "Audit trail · Twofold");
        assert_eq!(page_title("/forgot-password"), "Forgot password · Twofold");
        for (typed, said) in [
            ("-3", "A number of days cannot be negative."),
            ("", "Enter a number of days."),
            ("1.5", "Enter a whole number of days, in digits only."),
            ("x", "Enter a whole number of days, in digits only."),
        ] {
            let problem = parse_days("remember_browser_days", typed).err().map(|p| p.message);
            assert_eq!(problem.as_deref(), Some(said), "{typed:?}");
        }
        assert_eq!(parse_days("remember_browser_days", " 14 ").ok(), Some(14));
        assert_eq!(page_title("/reset-password"), "New password · Twofold");
        assert_eq!(page_title("/nowhere"), "Page not found · Twofold");
    }

    #[test]
    fn next_page_stays_on_our_origin() {
        assert_eq!(after_sign_in(Some("/users?q=a")), "/users?q=a");
        assert_eq!(after_sign_in(Some("//evil.example")), "/account");
        assert_eq!(after_sign_in(Some("https://evil.example")), "/account");
        assert_eq!(after_sign_in(Some("/sign-in")), "/account");
        assert_eq!(after_sign_in(None), "/account");
    }

    #[test]
    fn draft_uses_the_shared_validation() {
        let mut d = SettingsDraft::from(&ScopeSettings::default());
        assert_eq!(d.to_settings(), Ok(ScopeSettings::default()));
        d.remember_browser_days = "0".to_owned();
        assert_eq!(d.to_settings().map_err(|p| p.field), Err("remember_browser_days"));
        d.remember_browser_days = "abc".to_owned();
        assert_eq!(d.to_settings().map_err(|p| p.field), Err("remember_browser_days"));
        d.remember_browser_days = "30".to_owned();
        d.allowed_providers = ProviderSet { authenticator: false, email: false, sms: false, passkey: false };
        assert_eq!(d.to_settings().map_err(|p| p.field), Err("allowed_providers"));
        d.allowed_providers = ProviderSet::default();
        d.sms_allowed_country_codes = "+1, 44;49".to_owned();
        assert_eq!(
            d.to_settings().map(|s| s.sms_allowed_country_codes),
            Ok(vec!["1".into(), "44".into(), "49".into()])
        );
        d.sms_allowed_country_codes = "44 4".to_owned();
        assert_eq!(d.to_settings().map_err(|p| p.field), Err("sms_allowed_country_codes"));
        // Round trip: what the server stores comes back as it was typed, normalised.
        let stored =
            ScopeSettings { sms_allowed_country_codes: vec!["1".into(), "44".into()], ..ScopeSettings::default() };
        assert_eq!(SettingsDraft::from(&stored).to_settings(), Ok(stored));
    }
}
