//! The decision of an authorization request (DESIGN.md section 5): a table of the ways
//! scope, application, request and session combine, each with its verdict and the trace
//! sentence that explains it, and properties that must hold for every input (a request
//! never lowers the application's rule, a disabled scope never yields a silent
//! downgrade, a session that is reused really meets the demand).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use twofold_policy::authorization::{
    ACR_PWD, ACR_VALUES, AuthorizationInput, AuthorizationRequest, SessionFacts, Verdict, acr_demand, acr_of, decide,
};
use twofold_policy::{
    ApplicationRule, Behaviour, EffectivePolicy, PolicyInput, ProviderSet, Rule, Rules, Scope, ScopeSettings, Strength,
    resolve,
};

// Every provider but passkeys, so that `phishing_resistant` stays out of reach.
const NO_PASSKEY: ProviderSet = ProviderSet { authenticator: true, email: true, sms: true, passkey: false };
const CODES_ONLY: ProviderSet = ProviderSet { authenticator: false, email: true, sms: true, passkey: false };
const ALL: ProviderSet = ProviderSet { authenticator: true, email: true, sms: true, passkey: true };

const NOW: i64 = 1_000_000_000;
const REQUEST_AT: i64 = NOW - 5_000;

fn app(require: bool, min: Option<Strength>, max_age: Option<u32>) -> ApplicationRule {
    ApplicationRule {
        id: "app".to_owned(),
        name: "Wiki".to_owned(),
        rule: Rule { require_two_factor: require, min_strength: min },
        max_age_seconds: max_age,
    }
}

fn policy(behaviour: Behaviour, allowed: ProviderSet, application: &ApplicationRule) -> EffectivePolicy {
    let settings = ScopeSettings { behaviour, allowed_providers: allowed, ..ScopeSettings::default() };
    resolve(&PolicyInput {
        scope: Scope::Host { settings: &settings },
        user_two_factor_enabled: false,
        rules: Rules { groups: &[], application: Some(application) },
    })
}

fn req(acr: &[&str], max_age: Option<i64>, login: bool) -> AuthorizationRequest {
    AuthorizationRequest {
        acr_values: acr.iter().map(|s| (*s).to_owned()).collect(),
        max_age_seconds: max_age,
        prompt_login: login,
    }
}

/// A session made `age` seconds ago, whose second factor (if any) is as old.
fn session(factor: Option<Strength>, age: i64, offered: Option<Strength>) -> SessionFacts {
    let at = NOW - age * 1000;
    SessionFacts { signed_in_at: at, auth_time: at, second_factor: factor.map(|s| (s, at)), strongest_offered: offered }
}

struct Case {
    label: &'static str,
    behaviour: Behaviour,
    allowed: ProviderSet,
    app: ApplicationRule,
    request: AuthorizationRequest,
    session: Option<SessionFacts>,
    verdict: Verdict,
    second_factor: Option<Strength>,
    max_age: Option<i64>,
    /// A phrase the last trace sentence (the reason) must contain.
    says: &'static str,
}

#[test]
fn the_verdict_of_each_way_scope_application_request_and_session_combine() {
    use Behaviour::{Disabled, Forced, Optional};
    use Strength::{App, OutOfBand, PhishingResistant};
    let plain = app(false, None, None);
    let two = app(true, None, None);
    let strong = app(true, Some(App), Some(300));
    let keys = app(true, Some(PhishingResistant), None);
    let cases = vec![
        Case {
            label: "nothing asked, nobody signed in",
            behaviour: Optional,
            allowed: ALL,
            app: plain.clone(),
            request: req(&[], None, false),
            session: None,
            verdict: Verdict::SignIn,
            second_factor: None,
            max_age: None,
            says: "sign-in comes first",
        },
        Case {
            label: "nothing asked: the password session is reused",
            behaviour: Optional,
            allowed: ALL,
            app: plain.clone(),
            request: req(&[], None, false),
            session: Some(session(None, 3600, None)),
            verdict: Verdict::Reuse,
            second_factor: None,
            max_age: None,
            says: "used as it is",
        },
        Case {
            label: "the application asks for 2FA: out-of-band is the least",
            behaviour: Optional,
            allowed: ALL,
            app: two.clone(),
            request: req(&[], None, false),
            session: Some(session(Some(OutOfBand), 3600, Some(OutOfBand))),
            verdict: Verdict::Reuse,
            second_factor: Some(OutOfBand),
            max_age: None,
            says: "used as it is",
        },
        Case {
            label: "a password-only session steps up with the factor it holds",
            behaviour: Optional,
            allowed: ALL,
            app: two.clone(),
            request: req(&[], None, false),
            session: Some(session(None, 10, Some(App))),
            verdict: Verdict::StepUp,
            second_factor: Some(OutOfBand),
            max_age: None,
            says: "proves a second factor again",
        },
        Case {
            label: "no factor at all: enrol",
            behaviour: Optional,
            allowed: ALL,
            app: two.clone(),
            request: req(&[], None, false),
            session: Some(session(None, 10, None)),
            verdict: Verdict::Enroll,
            second_factor: Some(OutOfBand),
            max_age: None,
            says: "enrol one first",
        },
        Case {
            label: "phishing-resistant asked, the user holds only an authenticator: enrol",
            behaviour: Optional,
            allowed: ALL,
            app: keys.clone(),
            request: req(&[], None, false),
            session: Some(session(Some(App), 10, Some(App))),
            verdict: Verdict::Enroll,
            second_factor: Some(PhishingResistant),
            max_age: None,
            says: "enrol one first",
        },
        Case {
            label: "phishing-resistant asked, the user holds a passkey: step up with it",
            behaviour: Optional,
            allowed: ALL,
            app: keys.clone(),
            request: req(&[], None, false),
            session: Some(session(Some(App), 10, Some(PhishingResistant))),
            verdict: Verdict::StepUp,
            second_factor: Some(PhishingResistant),
            max_age: None,
            says: "no second factor that strong",
        },
        Case {
            label: "strong enough but older than the application's max_age: step up",
            behaviour: Optional,
            allowed: ALL,
            app: strong.clone(),
            request: req(&[], None, false),
            session: Some(session(Some(App), 301, Some(App))),
            verdict: Verdict::StepUp,
            second_factor: Some(App),
            max_age: Some(300),
            says: "too old",
        },
        Case {
            label: "the request asks for more; the shorter max_age wins",
            behaviour: Forced,
            allowed: ALL,
            app: two.clone(),
            request: req(&["urn:twofold:acr:2fa:app"], Some(60), false),
            session: Some(session(Some(App), 59, Some(App))),
            verdict: Verdict::Reuse,
            second_factor: Some(App),
            max_age: Some(60),
            says: "used as it is",
        },
        Case {
            label: "the request never lowers the application's rule",
            behaviour: Optional,
            allowed: ALL,
            app: strong.clone(),
            request: req(&[ACR_PWD], Some(900), false),
            session: Some(session(Some(OutOfBand), 10, Some(OutOfBand))),
            verdict: Verdict::Enroll,
            second_factor: Some(App),
            max_age: Some(300),
            says: "enrol one first",
        },
        Case {
            label: "of several acr values the weakest known one counts",
            behaviour: Optional,
            allowed: ALL,
            app: plain.clone(),
            request: req(&["urn:twofold:acr:2fa:app", "urn:twofold:acr:2fa:out_of_band", "gold"], None, false),
            session: Some(session(Some(OutOfBand), 10, Some(OutOfBand))),
            verdict: Verdict::Reuse,
            second_factor: Some(OutOfBand),
            max_age: None,
            says: "used as it is",
        },
        Case {
            label: "prompt=login: a session from before the request signs in again",
            behaviour: Optional,
            allowed: ALL,
            app: plain.clone(),
            request: req(&[], None, true),
            session: Some(session(None, 6, None)),
            verdict: Verdict::SignIn,
            second_factor: None,
            max_age: None,
            says: "began before the request",
        },
        Case {
            label: "prompt=login: a session made after the request is fine",
            behaviour: Optional,
            allowed: ALL,
            app: plain.clone(),
            request: req(&[], None, true),
            session: Some(session(None, 4, None)),
            verdict: Verdict::Reuse,
            second_factor: None,
            max_age: None,
            says: "used as it is",
        },
        Case {
            label: "max_age without a second factor bounds the sign-in",
            behaviour: Optional,
            allowed: ALL,
            app: plain.clone(),
            request: req(&[], Some(30), false),
            session: Some(session(None, 31, None)),
            verdict: Verdict::SignIn,
            second_factor: None,
            max_age: Some(30),
            says: "sign-in is too old",
        },
        Case {
            label: "a disabled scope cannot meet the application's demand",
            behaviour: Disabled,
            allowed: ALL,
            app: two.clone(),
            request: req(&[], None, false),
            session: Some(session(None, 1, None)),
            verdict: Verdict::Unmet,
            second_factor: Some(OutOfBand),
            max_age: None,
            says: "disabled",
        },
        Case {
            label: "... nor the request's",
            behaviour: Disabled,
            allowed: ALL,
            app: plain.clone(),
            request: req(&["urn:twofold:acr:2fa:out_of_band"], None, false),
            session: None,
            verdict: Verdict::Unmet,
            second_factor: Some(OutOfBand),
            max_age: None,
            says: "disabled",
        },
        Case {
            label: "... but the application's max_age still holds there",
            behaviour: Disabled,
            allowed: ALL,
            app: app(false, None, Some(30)),
            request: req(&[], None, false),
            session: Some(session(None, 31, None)),
            verdict: Verdict::SignIn,
            second_factor: None,
            max_age: Some(30),
            says: "sign-in is too old",
        },
        Case {
            label: "a strength the scope's providers cannot reach",
            behaviour: Optional,
            allowed: CODES_ONLY,
            app: strong.clone(),
            request: req(&[], None, false),
            session: None,
            verdict: Verdict::Unmet,
            second_factor: Some(App),
            max_age: Some(300),
            says: "reaches strength app",
        },
        Case {
            label: "phishing-resistant asked where passkeys are not allowed",
            behaviour: Forced,
            allowed: NO_PASSKEY,
            app: plain.clone(),
            request: req(&["urn:twofold:acr:2fa:phishing_resistant"], None, false),
            session: Some(session(Some(App), 1, Some(App))),
            verdict: Verdict::Unmet,
            second_factor: Some(PhishingResistant),
            max_age: None,
            says: "reaches strength phishing_resistant",
        },
    ];
    let mut checked = 0;
    for c in &cases {
        let p = policy(c.behaviour, c.allowed, &c.app);
        let d = decide(&AuthorizationInput {
            policy: &p,
            application: &c.app,
            request: &c.request,
            session: c.session.as_ref(),
            request_at: REQUEST_AT,
            now: NOW,
        });
        assert_eq!(
            (d.verdict, d.second_factor, d.max_age_seconds, d.fresh_sign_in),
            (c.verdict, c.second_factor, c.max_age, c.request.prompt_login),
            "{}",
            c.label
        );
        let trace = d.trace(&c.app);
        let last = trace.last().expect("a reason");
        assert!(last.contains(c.says), "{}: {trace:?}", c.label);
        if c.app.rule.require_two_factor {
            assert!(trace[0].contains("\"Wiki\""), "{}: the trace names the application: {trace:?}", c.label);
        }
        checked += 1;
    }
    assert_eq!(checked, 19);
}

#[test]
fn acr_values_name_each_strength_both_ways() {
    assert_eq!(acr_of(None), ACR_PWD);
    assert_eq!(acr_demand(ACR_PWD), Some(None));
    for s in Strength::ALL {
        assert_eq!(acr_demand(acr_of(Some(s))), Some(Some(s)));
    }
    assert_eq!(acr_of(Some(Strength::App)), "urn:twofold:acr:2fa:app");
    assert_eq!(acr_demand("gold"), None);
    assert_eq!(ACR_VALUES.len(), 4);
}

fn strength() -> impl Strategy<Value = Strength> {
    prop::sample::select(Strength::ALL.to_vec())
}

fn providers() -> impl Strategy<Value = ProviderSet> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>())
        .prop_map(|(authenticator, email, sms, passkey)| ProviderSet { authenticator, email, sms, passkey })
}

fn facts() -> impl Strategy<Value = Option<SessionFacts>> {
    let at = || REQUEST_AT - 20_000..=NOW;
    prop::option::of((at(), at(), prop::option::of((strength(), at())), prop::option::of(strength())).prop_map(
        |(signed_in_at, auth, second_factor, strongest_offered)| SessionFacts {
            signed_in_at,
            auth_time: auth.max(signed_in_at),
            second_factor,
            strongest_offered,
        },
    ))
}

fn request() -> impl Strategy<Value = AuthorizationRequest> {
    (
        prop::collection::vec(
            prop::sample::select(vec!["urn:twofold:acr:pwd", ACR_VALUES[1], ACR_VALUES[2], ACR_VALUES[3], "gold"]),
            0..3,
        ),
        prop::option::of(0i64..40),
        any::<bool>(),
    )
        .prop_map(|(acr, max_age, login)| AuthorizationRequest {
            acr_values: acr.into_iter().map(str::to_owned).collect(),
            max_age_seconds: max_age,
            prompt_login: login,
        })
}

proptest! {
    #[test]
    fn decisions_keep_their_promises(
        behaviour in prop::sample::select(Behaviour::ALL.to_vec()),
        allowed in providers(),
        require in any::<bool>(),
        min in prop::option::of(strength()),
        app_age in prop::option::of(0u32..40),
        request in request(),
        session in facts(),
    ) {
        let application = app(require || min.is_some(), min, app_age);
        let p = policy(behaviour, allowed, &application);
        let input = AuthorizationInput {
            policy: &p, application: &application, request: &request, session: session.as_ref(),
            request_at: REQUEST_AT, now: NOW,
        };
        let d = decide(&input);
        // The application's rule is never lowered by the request.
        if let Some(m) = min {
            prop_assert!(d.second_factor.is_some_and(|s| s >= m));
        }
        if require {
            prop_assert!(d.second_factor.is_some());
        }
        // A demanded second factor under a disabled scope ends in an error, never a downgrade.
        if behaviour == Behaviour::Disabled && d.second_factor.is_some() {
            prop_assert_eq!(d.verdict, Verdict::Unmet);
        }
        // A request that asks for nothing is never unmet.
        if d.second_factor.is_none() {
            prop_assert_ne!(d.verdict, Verdict::Unmet);
        }
        // Without a session nothing is reused.
        if session.is_none() {
            prop_assert!(matches!(d.verdict, Verdict::SignIn | Verdict::Unmet));
        }
        // A reused session really meets the demand.
        if d.verdict == Verdict::Reuse {
            let s = session.unwrap();
            if let Some(need) = d.second_factor {
                let (have, at) = s.second_factor.unwrap();
                prop_assert!(have >= need);
                if let Some(max) = d.max_age_seconds {
                    prop_assert!(at >= REQUEST_AT || NOW - at <= max * 1000);
                }
            }
            if request.prompt_login {
                prop_assert!(s.signed_in_at >= REQUEST_AT);
            }
        }
        // Stepping up is only offered with a factor that can meet the demand.
        if d.verdict == Verdict::StepUp {
            prop_assert!(session.unwrap().strongest_offered >= d.second_factor);
        }
        // The trace always explains itself, one reason last.
        prop_assert!(d.trace(&application).len() >= 2);
        // Deterministic: the same facts, the same answer.
        prop_assert_eq!(decide(&input), d);
    }
}
