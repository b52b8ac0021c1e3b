//! The authentication rule of one authorization request (DESIGN.md section 5): the
//! strictest of the scope, the application and the request, or the reason the scope
//! cannot meet it. Pure, so one table test covers it.
//!
//! The scope's own policy (section 1) needs no term here: every session was made
//! under it, so it is met by any session of the scope's user. What the rule adds is
//! what the application and the request ask beyond it.

use twofold_policy::{Behaviour, ProviderSet, Strength};

/// `acr` values: what a sign-in proved. Clients may ask for one in `acr_values`.
pub const ACR_PWD: &str = "urn:twofold:acr:pwd";
pub const ACR_VALUES: [&str; 4] =
    [ACR_PWD, "urn:twofold:acr:2fa:out_of_band", "urn:twofold:acr:2fa:app", "urn:twofold:acr:2fa:phishing_resistant"];

/// The `acr` of a sign-in that proved a second factor of `strength` (or none).
pub fn acr_of(strength: Option<Strength>) -> &'static str {
    match strength {
        None => ACR_PWD,
        Some(Strength::OutOfBand) => ACR_VALUES[1],
        Some(Strength::App) => ACR_VALUES[2],
        Some(Strength::PhishingResistant) => ACR_VALUES[3],
    }
}

/// What an `acr` value demands: `None` for the password alone, else a second factor
/// of at least that strength.
fn demand_of(acr: &str) -> Option<Option<Strength>> {
    match acr {
        ACR_PWD => Some(None),
        "urn:twofold:acr:2fa:out_of_band" => Some(Some(Strength::OutOfBand)),
        "urn:twofold:acr:2fa:app" => Some(Some(Strength::App)),
        "urn:twofold:acr:2fa:phishing_resistant" => Some(Some(Strength::PhishingResistant)),
        _ => None,
    }
}

/// The scope as far as the rule is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeTerms {
    /// The behaviour that decides for the scope's users (a tenant's ceiling when it is
    /// forced or disabled, else the scope's settings).
    pub behaviour: Behaviour,
    pub allowed_providers: ProviderSet,
}

/// The application's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppTerms {
    pub require_two_factor: bool,
    pub min_strength: Option<Strength>,
    pub max_age_secs: Option<i64>,
}

/// What the authorization request asks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestTerms {
    pub acr_values: Vec<String>,
    pub max_age_secs: Option<i64>,
    pub prompt_login: bool,
}

/// The resolved rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// A second factor of at least this strength, if any is demanded.
    pub second_factor: Option<Strength>,
    /// How old the authentication (the second factor, when one is demanded) may be.
    pub max_age_secs: Option<i64>,
    /// `prompt=login`: a sign-in made after the request.
    pub fresh_sign_in: bool,
}

/// Resolves the rule, or says why the scope cannot meet it
/// (`unmet_authentication_requirements`, never a silent downgrade).
pub fn resolve(scope: ScopeTerms, app: AppTerms, request: &RequestTerms) -> Result<Rule, String> {
    // acr_values lists acceptable values in order of preference: the weakest known one
    // is the least the client accepts. Unknown values are ignored (acr is voluntary).
    let asked = request.acr_values.iter().filter_map(|v| demand_of(v)).min();
    let mut second_factor: Option<Strength> = None;
    if app.require_two_factor || app.min_strength.is_some() {
        second_factor = Some(app.min_strength.unwrap_or(Strength::OutOfBand));
    }
    if let Some(Some(strength)) = asked {
        second_factor = Some(second_factor.map_or(strength, |s| s.max(strength)));
    }
    let max_age_secs = match (app.max_age_secs, request.max_age_secs) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if let Some(strength) = second_factor {
        if scope.behaviour == Behaviour::Disabled {
            return Err("two-factor authentication is disabled for this application's users".to_owned());
        }
        let best = scope.allowed_providers.iter().map(|p| p.strength()).max();
        if best.is_none_or(|b| b < strength) {
            return Err(format!(
                "no second factor of strength {} is available to this application's users",
                strength.as_str()
            ));
        }
    }
    Ok(Rule { second_factor, max_age_secs, fresh_sign_in: request.prompt_login })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every provider but passkeys, so that `phishing_resistant` stays out of reach here.
    const ALL: ProviderSet = ProviderSet { authenticator: true, email: true, sms: true, passkey: false };
    const CODES_ONLY: ProviderSet = ProviderSet { authenticator: false, email: true, sms: true, passkey: false };

    fn scope(behaviour: Behaviour, allowed: ProviderSet) -> ScopeTerms {
        ScopeTerms { behaviour, allowed_providers: allowed }
    }

    fn req(acr: &[&str], max_age: Option<i64>, login: bool) -> RequestTerms {
        RequestTerms {
            acr_values: acr.iter().map(|s| (*s).to_owned()).collect(),
            max_age_secs: max_age,
            prompt_login: login,
        }
    }

    /// Every field of the rule, for each way the three levels combine.
    #[test]
    fn the_strictest_of_scope_application_and_request() {
        use Behaviour::*;
        use Strength::*;
        let app2fa = AppTerms { require_two_factor: true, ..AppTerms::default() };
        let app_app = AppTerms { require_two_factor: true, min_strength: Some(App), max_age_secs: Some(300) };
        let cases: Vec<(ScopeTerms, AppTerms, RequestTerms, Result<Rule, ()>)> = vec![
            // Nothing asked: whatever the scope's policy made of the session.
            (
                scope(Optional, ALL),
                AppTerms::default(),
                req(&[], None, false),
                Ok(Rule { second_factor: None, max_age_secs: None, fresh_sign_in: false }),
            ),
            // The application asks for 2FA: out-of-band is the least.
            (
                scope(Optional, ALL),
                app2fa,
                req(&[], None, false),
                Ok(Rule { second_factor: Some(OutOfBand), max_age_secs: None, fresh_sign_in: false }),
            ),
            // The request asks for more; the shorter max_age wins; prompt=login kept.
            (
                scope(Forced, ALL),
                app2fa,
                req(&["urn:twofold:acr:2fa:app"], Some(60), true),
                Ok(Rule { second_factor: Some(App), max_age_secs: Some(60), fresh_sign_in: true }),
            ),
            // The request never lowers the application's rule.
            (
                scope(Optional, ALL),
                app_app,
                req(&[ACR_PWD], Some(900), false),
                Ok(Rule { second_factor: Some(App), max_age_secs: Some(300), fresh_sign_in: false }),
            ),
            // Of several acr values the weakest known one counts; unknown ones are ignored.
            (
                scope(Optional, ALL),
                AppTerms::default(),
                req(&["urn:twofold:acr:2fa:app", "urn:twofold:acr:2fa:out_of_band", "gold"], None, false),
                Ok(Rule { second_factor: Some(OutOfBand), max_age_secs: None, fresh_sign_in: false }),
            ),
            // A disabled scope cannot meet any second-factor demand.
            (scope(Disabled, ALL), app2fa, req(&[], None, false), Err(())),
            (
                scope(Disabled, ALL),
                AppTerms::default(),
                req(&["urn:twofold:acr:2fa:out_of_band"], None, false),
                Err(()),
            ),
            // ... but a request without one still works there.
            (
                scope(Disabled, ALL),
                AppTerms { max_age_secs: Some(30), ..AppTerms::default() },
                req(&[], None, false),
                Ok(Rule { second_factor: None, max_age_secs: Some(30), fresh_sign_in: false }),
            ),
            // Strength the scope's providers cannot reach.
            (scope(Optional, CODES_ONLY), app_app, req(&[], None, false), Err(())),
            (
                scope(Forced, ALL),
                AppTerms::default(),
                req(&["urn:twofold:acr:2fa:phishing_resistant"], None, false),
                Err(()),
            ),
        ];
        for (i, (s, a, r, expected)) in cases.into_iter().enumerate() {
            assert_eq!(resolve(s, a, &r).map_err(|_| ()), expected, "case {i}");
        }
    }

    #[test]
    fn acr_names_each_strength() {
        assert_eq!(acr_of(None), ACR_PWD);
        assert_eq!(acr_of(Some(Strength::App)), "urn:twofold:acr:2fa:app");
        for v in ACR_VALUES {
            assert!(demand_of(v).is_some());
        }
    }
}
