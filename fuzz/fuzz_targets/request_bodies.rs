//! Request bodies into domain types: the bytes of a request go through the server's own
//! JSON extractor into each wire type of the API, then through the checks the handlers
//! run on them (scope settings validation, the name parsers, code and phone parsing).
//!
//! Properties: a body that is refused is refused with a 4xx in the API's error shape,
//! never a 500; an accepted value serialises and reads back to itself; every parser is
//! idempotent on what it accepts (parse, print, parse gives the same value) and accepts
//! only what its rules allow; policy resolution over any valid settings is consistent.
//!
//! The first input byte picks the type, the rest is the body. Passkey bodies include the
//! browser's credential, read into webauthn-rs's shapes and its CBOR attestation object.
#![no_main]

use std::fmt::Debug;

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{Request, header};
use axum::response::IntoResponse;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use twofold_policy::names::{EmailAddress, GroupName, TenantName, Username, check_new_password};
use twofold_policy::vocab::{MAX_ENROLLMENT_GRACE_DAYS, MAX_REMEMBER_BROWSER_DAYS, is_calling_code};
use twofold_policy::wire::*;
use twofold_policy::{Behaviour, PolicyInput, Rules, Scope, ScopeSettings, TenantFeature, resolve};
use twofold_server::extract::Json;
use twofold_server::factors;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    match selector % 24 {
        0 => check::<SignInRequest>(body, |r| {
            if let Some(t) = &r.tenant {
                tenant_name(t);
            }
            username(&r.username);
        }),
        1 => check::<SendCodeRequest>(body, |_| {}),
        2 => check::<VerifyRequest>(body, |r| code(&r.code)),
        3 => check::<CodeRequest>(body, |r| code(&r.code)),
        4 => check::<EmailRequest>(body, |r| {
            if let Some(e) = &r.email {
                email(e);
            }
        }),
        5 => check::<PhoneRequest>(body, |r| {
            if let Some(p) = &r.phone {
                let _ = factors::parse_phone(p);
            }
        }),
        6 => check::<ReauthenticateRequest>(body, |r| {
            if let Some(c) = &r.code {
                code(c);
            }
        }),
        7 => check::<ChangePassword>(body, |r| password(&r.new_password)),
        8 => check::<CreateTenant>(body, |r| tenant_name(&r.name)),
        9 => check::<CreateUser>(body, |r| {
            username(&r.username);
            password(&r.password);
            if let Some(e) = &r.email {
                email(e);
            }
        }),
        10 => check::<SetTwoFactor>(body, |_| {}),
        11 => check::<AssignRole>(body, |r| {
            let _ = twofold_server::extract::parse_id(&r.user_id, "user");
        }),
        12 => check::<ScopeSettings>(body, settings),
        13 => check::<SettingsPreviewRequest>(body, |r| settings(&r.settings)),
        14 => check::<TenantFeature>(body, |f| {
            assert_eq!(Behaviour::parse(f.behaviour.as_str()), Some(f.behaviour));
        }),
        15 => check::<FeaturePreviewRequest>(body, |_| {}),
        17 => check::<GroupRequest>(body, |r| group_name(&r.name)),
        18 => check::<GroupRulePreviewRequest>(body, |_| {}),
        19 => check::<AddGroupMember>(body, |r| {
            let _ = twofold_server::extract::parse_id(&r.user_id, "user");
        }),
        20 => check::<MembershipPreviewRequest>(body, |r| {
            let _ = twofold_server::extract::parse_id(&r.user_id, "user");
        }),
        21 => check::<PasskeyName>(body, |r| {
            if let Ok(name) = r.parse() {
                // Accepted names are trimmed, short and printable, and accepted again.
                assert_eq!(name, name.trim());
                assert!(!name.is_empty() && name.chars().count() <= MAX_PASSKEY_NAME);
                assert_eq!(PasskeyName { name: name.to_owned() }.parse(), Ok(name));
            }
        }),
        // The browser's WebAuthn answer, read as a registration and as an assertion the
        // way the finishing routes read it: a 4xx or a value, never a panic or a 500.
        22 => check::<PasskeyFinish>(body, |r| {
            for read in factors::passkey::read_credential(r) {
                if let Err(e) = read {
                    assert!(e.into_response().status().is_client_error());
                }
            }
        }),
        16 => {
            // Without `Content-Type: application/json` every body is refused with 415.
            let request = Request::builder().method("POST").uri("/").body(Body::from(body.to_vec()));
            let Ok(request) = request else { return };
            let extracted = futures_executor::block_on(Json::<CodeRequest>::from_request(request, &()));
            match extracted {
                Ok(_) => panic!("a body without a JSON content type was accepted"),
                Err(e) => assert_eq!(e.into_response().status(), 415),
            }
        }
        // The name parsers on raw text, without JSON escaping in the way.
        _ => {
            if let Ok(text) = std::str::from_utf8(body) {
                tenant_name(text);
                username(text);
                group_name(text);
                email(text);
                password(text);
                code(text);
                let _ = Behaviour::parse(text);
            }
        }
    }
});

/// Extracts `T` from `body` the way a handler does; on success runs `then` on it.
fn check<T>(body: &[u8], then: impl FnOnce(&T))
where
    T: DeserializeOwned + Serialize + PartialEq + Debug + Send + 'static,
{
    let request = Request::builder()
        .method("POST")
        .uri("/")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()));
    let Ok(request) = request else { return };
    match futures_executor::block_on(Json::<T>::from_request(request, &())) {
        Ok(Json(value)) => {
            let text = serde_json::to_string(&value).unwrap_or_else(|e| panic!("cannot serialise {value:?}: {e}"));
            let back: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text} does not read back: {e}"));
            assert_eq!(back, value, "JSON round trip changed the value");
            then(&value);
        }
        Err(e) => {
            let status = e.into_response().status();
            assert!(status.is_client_error(), "a bad body answered {status}");
        }
    }
}

fn settings(s: &ScopeSettings) {
    match s.validate() {
        Ok(()) => {
            assert!((1..=MAX_REMEMBER_BROWSER_DAYS).contains(&s.remember_browser_days));
            assert!(s.enrollment_grace_days <= MAX_ENROLLMENT_GRACE_DAYS);
            assert!(s.allowed_providers.iter().next().is_some());
            assert!(s.sms_allowed_country_codes.iter().all(|c| is_calling_code(c)));
            for user_two_factor_enabled in [false, true] {
                for feature in Behaviour::ALL {
                    let feature = TenantFeature { behaviour: feature };
                    for scope in [Scope::Host { settings: s }, Scope::Tenant { feature, settings: s }] {
                        let p = resolve(&PolicyInput::new(scope, user_two_factor_enabled));
                        match p.behaviour {
                            Behaviour::Forced => assert!(p.required),
                            Behaviour::Disabled => assert!(!p.required),
                            Behaviour::Optional => assert_eq!(p.required, user_two_factor_enabled),
                        }
                        if let Scope::Tenant { feature, .. } = scope
                            && feature.behaviour != Behaviour::Optional
                        {
                            assert_eq!(p.behaviour, feature.behaviour, "a lower level overrode the ceiling");
                        }
                        assert!(!p.remember_browser_allowed || p.required);
                        assert_eq!(p.allowed_providers, s.allowed_providers);
                        let _ = (p.summary(Rules::NONE), p.trace(Rules::NONE));
                    }
                }
            }
        }
        Err(e) => assert!(!e.field().is_empty()),
    }
}

fn tenant_name(raw: &str) {
    if let Ok(name) = TenantName::parse(raw) {
        let s = name.as_str();
        assert!((2..=63).contains(&s.len()), "{s:?}");
        assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'), "{s:?}");
        assert!(!s.starts_with('-') && !s.ends_with('-') && s != "host", "{s:?}");
        assert_eq!(TenantName::parse(s).as_ref(), Ok(&name), "not idempotent");
        assert_eq!(TenantName::parse(&s.to_uppercase()).as_ref(), Ok(&name), "case matters");
    }
}

fn username(raw: &str) {
    if let Ok(user) = Username::parse(raw) {
        let shown = user.as_str();
        assert!((1..=64).contains(&shown.chars().count()), "{shown:?}");
        assert!(!shown.chars().any(|c| c.is_whitespace() || c.is_control()), "{shown:?}");
        assert_eq!(Username::parse(shown).as_ref(), Ok(&user), "not idempotent");
        // Look-up is by key: typing the key itself must find the same user.
        if let Ok(typed_key) = Username::parse(user.key()) {
            assert_eq!(typed_key.key(), user.key(), "lowercasing is not idempotent for {shown:?}");
        }
    }
}

fn group_name(raw: &str) {
    if let Ok(name) = GroupName::parse(raw) {
        let shown = name.as_str();
        assert!((1..=64).contains(&shown.chars().count()), "{shown:?}");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(!shown.starts_with(' ') && !shown.ends_with(' ') && !shown.contains("  "), "{shown:?}");
        assert_eq!(GroupName::parse(shown).as_ref(), Ok(&name), "not idempotent");
    }
}

fn email(raw: &str) {
    if let Ok(address) = EmailAddress::parse(raw) {
        let s = address.as_str();
        assert!(s.len() <= 254 && s.matches('@').count() == 1, "{s:?}");
        assert_eq!(EmailAddress::parse(s).as_ref(), Ok(&address), "not idempotent");
        let masked = factors::mask_email(s);
        let domain = s.split_once('@').map(|(_, d)| d).unwrap_or_default();
        assert!(masked.ends_with(&format!("***@{domain}")), "{masked:?}");
    }
}

fn password(raw: &str) {
    let ok = check_new_password(raw).is_ok();
    assert_eq!(ok, raw.chars().count() >= 8 && raw.len() <= 256);
}

fn code(raw: &str) {
    if let Some(c) = factors::typed_numeric_code(raw) {
        assert_eq!(c.len(), 6);
    }
    let recovery = factors::normalize_recovery(raw);
    assert_eq!(factors::normalize_recovery(&recovery), recovery);
}
