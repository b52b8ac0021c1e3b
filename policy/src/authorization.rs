//! What one authorization request to an application asks of a browser's session
//! (DESIGN.md section 5): reuse it, step it up, sign in again, enrol a factor first, or
//! end with `unmet_authentication_requirements`.
//!
//! The demand is the strictest of the user's resolved policy (scope, groups and the
//! application's rule, from [`crate::resolve`]) and of the request (`acr_values`,
//! `max_age`, `prompt=login`); the verdict compares it with what the session proved and
//! when. Pure and clock-free (the caller passes the times), so the authorization
//! endpoint, an admin's what-if and the tests all get the same answer for the same facts.

use serde::{Deserialize, Serialize};

use crate::resolve::{ApplicationRule, EffectivePolicy};
use crate::vocab::{Behaviour, Strength};

/// `acr` of a sign-in that proved the password alone.
pub const ACR_PWD: &str = "urn:twofold:acr:pwd";
/// Every `acr` value, weakest first: what a sign-in proved, and what a client may ask
/// for in `acr_values`.
pub const ACR_VALUES: [&str; 4] =
    [ACR_PWD, "urn:twofold:acr:2fa:out_of_band", "urn:twofold:acr:2fa:app", "urn:twofold:acr:2fa:phishing_resistant"];

/// The `acr` of a sign-in that proved a second factor of `strength` (or none).
pub fn acr_of(strength: Option<Strength>) -> &'static str {
    match strength {
        None => ACR_VALUES[0],
        Some(Strength::OutOfBand) => ACR_VALUES[1],
        Some(Strength::App) => ACR_VALUES[2],
        Some(Strength::PhishingResistant) => ACR_VALUES[3],
    }
}

/// What an `acr` value demands: `Some(None)` for the password alone, `Some(Some(s))` for
/// a second factor of at least `s`, `None` for a value Twofold does not know.
pub fn acr_demand(acr: &str) -> Option<Option<Strength>> {
    let i = ACR_VALUES.iter().position(|v| *v == acr)?;
    Some(i.checked_sub(1).and_then(|s| Strength::ALL.get(s).copied()))
}

/// What the authorization request itself asks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthorizationRequest {
    pub acr_values: Vec<String>,
    /// `max_age`, in seconds.
    pub max_age_seconds: Option<i64>,
    /// `prompt=login`: a sign-in made after the request.
    pub prompt_login: bool,
}

/// What a browser's session proved, and when (milliseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionFacts {
    /// When the session was created (its sign-in).
    pub signed_in_at: i64,
    /// The latest authentication of any kind (sign-in, reauthentication, second factor).
    pub auth_time: i64,
    /// The strength and time of the session's last second factor.
    pub second_factor: Option<(Strength, i64)>,
    /// The strongest second factor the user holds that the scope offers now: whether a
    /// step-up could meet the demand, or a factor must be enrolled first.
    pub strongest_offered: Option<Strength>,
}

/// What the browser must do for the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The session meets the demand: it is used as it is.
    Reuse,
    /// A second factor of the demanded strength again, no password.
    StepUp,
    /// A (new) sign-in as a user of the application's scope.
    SignIn,
    /// The user holds no factor strong enough that the scope offers: enrol one first.
    Enroll,
    /// The scope cannot meet the demand: `unmet_authentication_requirements`.
    Unmet,
}

/// Why the scope cannot meet a demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmet {
    /// The scope's behaviour is `disabled`; no rule overrides that.
    Disabled,
    /// None of the scope's allowed providers reaches this strength.
    NoProvider(Strength),
}

impl Unmet {
    /// The `error_description` sent to the client.
    pub fn description(self) -> String {
        match self {
            Unmet::Disabled => "two-factor authentication is disabled for this application's users".to_owned(),
            Unmet::NoProvider(s) => {
                format!("no second factor of strength {} is available to this application's users", s.as_str())
            }
        }
    }
}

/// Why the verdict is what it is; the trace puts it in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Unmet(Unmet),
    NoSession,
    /// `prompt=login` and the session began before the request.
    PromptLogin,
    /// No second factor is demanded and the last authentication is older than `max_age`.
    SignInTooOld,
    /// The session's second factor is missing or weaker than demanded.
    TooWeak,
    /// The session's second factor is strong enough but older than `max_age`.
    TooOld,
    Met,
}

/// The resolved demand of a request and the verdict for one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authorization {
    pub verdict: Verdict,
    pub reason: Reason,
    /// A second factor of at least this strength, if one is demanded.
    pub second_factor: Option<Strength>,
    /// How old the authentication (the second factor, when one is demanded) may be.
    pub max_age_seconds: Option<i64>,
    /// `prompt=login`: only a sign-in made after the request will do.
    pub fresh_sign_in: bool,
    /// Who asked for the second factor, for the trace.
    pub asked_by_application: bool,
    pub asked_by_request: bool,
}

/// The facts of one decision.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizationInput<'a> {
    /// The user's policy resolved with `application`'s rule; before anyone signed in, the
    /// scope's (switch off, no groups) with it.
    pub policy: &'a EffectivePolicy,
    pub application: &'a ApplicationRule,
    pub request: &'a AuthorizationRequest,
    /// The browser's session, when it is one of the application's scope.
    pub session: Option<&'a SessionFacts>,
    /// When the request was made (ms): anything proven since is recent enough for it.
    pub request_at: i64,
    pub now: i64,
}

/// Decides what the request asks of the session.
///
/// A second factor is demanded when the application's rule or the request asks for one;
/// the strength is then the strongest of the resolved policy's (scope, groups,
/// application) and the request's. The scope's and groups' own requirement needs no term
/// here: the sign-in that made the session already applied it (an enrolment grace period
/// included).
pub fn decide(input: &AuthorizationInput<'_>) -> Authorization {
    let policy = input.policy;
    let rule = input.application.rule;
    let request = input.request;
    // acr_values lists acceptable values in order of preference: the weakest known one
    // is the least the client accepts. Unknown values are ignored (acr is voluntary).
    let asked = request.acr_values.iter().filter_map(|v| acr_demand(v)).min().flatten();
    let asked_by_application = rule.require_two_factor || rule.min_strength.is_some();
    // The application's own strength counts even where a disabled scope left it out of
    // the policy: the demand is reported as asked, and then found unmet.
    let floor = rule.min_strength.map_or(policy.required_strength, |m| m.max(policy.required_strength));
    let second_factor = (asked_by_application || asked.is_some()).then(|| asked.map_or(floor, |a| a.max(floor)));
    // The application's max_age holds even where the scope disables the second factor:
    // then it bounds the age of the sign-in itself.
    let max_age_seconds = match (input.application.max_age_seconds.map(i64::from), request.max_age_seconds) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let out = |verdict, reason| Authorization {
        verdict,
        reason,
        second_factor,
        max_age_seconds,
        fresh_sign_in: request.prompt_login,
        asked_by_application,
        asked_by_request: asked.is_some(),
    };
    if let Some(strength) = second_factor {
        if policy.behaviour == Behaviour::Disabled {
            return out(Verdict::Unmet, Reason::Unmet(Unmet::Disabled));
        }
        let best = policy.allowed_providers.iter().map(|p| p.strength()).max();
        if best.is_none_or(|b| b < strength) {
            return out(Verdict::Unmet, Reason::Unmet(Unmet::NoProvider(strength)));
        }
    }
    let Some(session) = input.session else {
        return out(Verdict::SignIn, Reason::NoSession);
    };
    if request.prompt_login && session.signed_in_at < input.request_at {
        return out(Verdict::SignIn, Reason::PromptLogin);
    }
    // Whatever happened after the request was made is recent enough for it, however
    // small max_age is (max_age=0 asks for exactly that, like prompt=login).
    let recent = |at: i64, max_secs: i64| {
        at >= input.request_at || input.now.saturating_sub(at) <= max_secs.saturating_mul(1000)
    };
    match second_factor {
        Some(strength) => {
            let strong_enough = session.second_factor.is_some_and(|(s, _)| s >= strength);
            let recent_enough = match (max_age_seconds, session.second_factor) {
                (Some(max), Some((_, at))) => recent(at, max),
                _ => true,
            };
            if strong_enough && recent_enough {
                return out(Verdict::Reuse, Reason::Met);
            }
            let reason = if strong_enough { Reason::TooOld } else { Reason::TooWeak };
            // Step up with a factor the user has and the scope offers now; without one
            // strong enough, enrol one first.
            if session.strongest_offered.is_some_and(|s| s >= strength) {
                out(Verdict::StepUp, reason)
            } else {
                out(Verdict::Enroll, reason)
            }
        }
        None => match max_age_seconds {
            Some(max) if !recent(session.auth_time, max) => out(Verdict::SignIn, Reason::SignInTooOld),
            _ => out(Verdict::Reuse, Reason::Met),
        },
    }
}

impl Authorization {
    /// The explanation in plain words: what was demanded and by whom, then why the
    /// verdict follows. `application` must be the one decided for.
    pub fn trace(&self, application: &ApplicationRule) -> Vec<String> {
        let name = &application.name;
        let mut out = Vec::with_capacity(4);
        match (self.second_factor, self.asked_by_application, self.asked_by_request) {
            (None, _, _) => {
                out.push(format!("Signing in to \"{name}\" asks for no second factor beyond the user's own policy."))
            }
            (Some(s), true, true) => out.push(format!(
                "\"{name}\" and the request ask for a second factor; the strictest accepted strength is {}.",
                s.as_str()
            )),
            (Some(s), true, false) => {
                out.push(format!("\"{name}\" asks for a second factor of strength {} or stronger.", s.as_str()))
            }
            (Some(s), false, _) => out.push(format!(
                "The request (acr_values) asks for a second factor of strength {} or stronger.",
                s.as_str()
            )),
        }
        if let Some(max) = self.max_age_seconds {
            out.push(if self.second_factor.is_some() {
                format!("The second factor must be at most {max} seconds old.")
            } else {
                format!("The sign-in must be at most {max} seconds old.")
            });
        }
        if self.fresh_sign_in {
            out.push("The request asks for a new sign-in (prompt=login).".to_owned());
        }
        out.push(match self.reason {
            Reason::Unmet(Unmet::Disabled) => {
                "Two-factor sign-in is disabled for the scope, so the request cannot be met and ends with unmet_authentication_requirements.".to_owned()
            }
            Reason::Unmet(Unmet::NoProvider(s)) => format!(
                "None of the scope's allowed factors reaches strength {}, so the request ends with unmet_authentication_requirements.",
                s.as_str()
            ),
            Reason::NoSession => "Nobody is signed in to the scope yet: a sign-in comes first.".to_owned(),
            Reason::PromptLogin => "The session began before the request, so a new sign-in is needed.".to_owned(),
            Reason::SignInTooOld => "The last sign-in is too old: a new sign-in is needed.".to_owned(),
            Reason::TooWeak | Reason::TooOld => {
                let what = if self.reason == Reason::TooOld {
                    "The session's second factor is too old"
                } else {
                    "The session has no second factor that strong"
                };
                match self.verdict {
                    Verdict::StepUp => format!("{what}; the user proves a second factor again (no password)."),
                    _ => format!("{what}, and the user holds none that the scope offers: they enrol one first."),
                }
            }
            Reason::Met => "The session meets every demand and is used as it is.".to_owned(),
        });
        out
    }
}
