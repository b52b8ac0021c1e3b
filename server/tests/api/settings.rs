//! 2FA settings of the host and of tenants: defaults, saving, refusal of bad input
//! without partial writes, the host's ceiling over a tenant's behaviour, and the impact
//! previews that must never save anything.

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Client, PASSWORD, TestApp, default_settings, settings_with};

#[tokio::test]
async fn host_settings_start_at_the_defaults() {
    let app = TestApp::spawn_as_admin().await;
    let s = app.host_settings().await;
    assert_eq!(s, default_settings());
    // Spelt out once, so a change of the shared defaults cannot pass unnoticed.
    assert_eq!(s["behaviour"], "optional");
    assert_eq!(s["users_can_change"], true);
    assert_eq!(s["remember_browser"], true);
    assert_eq!(s["remember_browser_days"], 14);
    assert_eq!(s["enrollment_grace_days"], 0);
    assert_eq!(s["allowed_providers"], json!({ "authenticator": true, "email": true, "sms": true, "passkey": true }));
    assert_eq!(s["min_strength"], "out_of_band");
    assert_eq!(s["passkey_aaguids"], json!([]));
}

#[tokio::test]
async fn host_settings_round_trip() {
    let app = TestApp::spawn_as_admin().await;
    let new = json!({
        "behaviour": "disabled",
        "users_can_change": false,
        "remember_browser": false,
        "remember_browser_days": 30,
        "enrollment_grace_days": 7,
        "allowed_providers": { "authenticator": true, "email": false, "sms": true, "passkey": true },
        "sms_allowed_country_codes": ["44", "1"],
        "min_strength": "app",
        "passkey_aaguids": ["cb69481e-8ff7-4039-93ec-0a2729a154a8"]
    });
    app.put_host_settings(&new).await;
    assert_eq!(app.host_settings().await, new);
    // A second client reads the stored value, not something kept for the writer.
    let other = app.new_client();
    other.sign_in_admin().await;
    assert_eq!(other.host_settings().await, new);
}

/// One malformed request and what the API must answer.
struct BadInput {
    what: &'static str,
    body: String,
    content_type: Option<&'static str>,
    status: StatusCode,
    code: &'static str,
    field: Option<&'static str>,
    /// Text the message must contain so the client learns what was wrong.
    mentions: Option<&'static str>,
}

fn bad_settings_inputs() -> Vec<BadInput> {
    // Each body would, if any of it were applied, change the behaviour to forced, so a
    // partial write shows up in the GET that follows.
    let forced = |changes: Value| {
        let mut s = settings_with(json!({ "behaviour": "forced" }));
        for (k, v) in changes.as_object().expect("object") {
            s[k] = v.clone();
        }
        s
    };
    let mut missing = forced(json!({}));
    missing.as_object_mut().expect("object").remove("allowed_providers");
    let json_ct = Some("application/json");
    let case = |what, body: Value, status, code, field, mentions| BadInput {
        what,
        body: body.to_string(),
        content_type: json_ct,
        status,
        code,
        field,
        mentions,
    };
    vec![
        BadInput {
            what: "malformed JSON",
            body: r#"{"behaviour": "forced","#.to_owned(),
            content_type: json_ct,
            status: StatusCode::BAD_REQUEST,
            code: "malformed_json",
            field: None,
            mentions: None,
        },
        case(
            "unknown field",
            forced(json!({ "behavior_typo": "forced" })),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            None,
            Some("behavior_typo"),
        ),
        case(
            "wrong type",
            forced(json!({ "remember_browser_days": "fourteen" })),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            None,
            Some("remember_browser_days"),
        ),
        case(
            "bad enum value",
            settings_with(json!({ "behaviour": "sometimes" })),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            None,
            Some("sometimes"),
        ),
        case("missing field", missing, StatusCode::BAD_REQUEST, "invalid_body", None, Some("allowed_providers")),
        case(
            "remember_browser_days 0",
            forced(json!({ "remember_browser_days": 0 })),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("remember_browser_days"),
            None,
        ),
        case(
            "remember_browser_days 366",
            forced(json!({ "remember_browser_days": 366 })),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("remember_browser_days"),
            None,
        ),
        case(
            "enrollment_grace_days 91",
            forced(json!({ "enrollment_grace_days": 91 })),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("enrollment_grace_days"),
            None,
        ),
        case(
            "no provider",
            forced(
                json!({ "allowed_providers": { "authenticator": false, "email": false, "sms": false, "passkey": false } }),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("allowed_providers"),
            None,
        ),
        BadInput {
            what: "missing content type",
            body: forced(json!({})).to_string(),
            content_type: None,
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            field: None,
            mentions: None,
        },
        BadInput {
            what: "text content type",
            body: forced(json!({})).to_string(),
            content_type: Some("text/plain"),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            field: None,
            mentions: None,
        },
    ]
}

/// Sends every bad input to `path` and checks each is refused and nothing is stored.
async fn refuses_bad_settings(client: &Client, path: &str, read: impl AsyncFn() -> Value) {
    let before = read().await;
    for bad in bad_settings_inputs() {
        let mut req = client.raw(Method::PUT, path).header("X-Requested-With", "test").body(bad.body.clone());
        if let Some(ct) = bad.content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        let resp = client.send(req).await;
        let body = resp.assert_error(bad.status, bad.code);
        assert_eq!(body.get("field").and_then(Value::as_str), bad.field, "{}: {body}", bad.what);
        if let Some(text) = bad.mentions {
            let message = body["message"].as_str().unwrap_or("");
            assert!(message.contains(text), "{}: {body}", bad.what);
        }
        assert_eq!(read().await, before, "{} wrote something", bad.what);
    }
}

#[tokio::test]
async fn bad_host_settings_are_refused_and_nothing_is_stored() {
    let app = TestApp::spawn_as_admin().await;
    refuses_bad_settings(&app.client, "/api/host/settings", async || app.host_settings().await).await;
}

#[tokio::test]
async fn bad_tenant_settings_are_refused_and_nothing_is_stored() {
    let app = TestApp::spawn_as_admin().await;
    let t = app.create_tenant("acme").await;
    let path = format!("/api/tenants/{}/settings", t.id);
    refuses_bad_settings(&app.client, &path, async || app.tenant_settings(&t.id).await).await;
}

#[tokio::test]
async fn tenant_behaviour_is_fixed_while_the_ceiling_is_forced_or_disabled() {
    let app = TestApp::spawn_as_admin().await;
    let t = app.create_tenant("acme").await;
    let path = format!("/api/tenants/{}/settings", t.id);

    let view = app.tenant_settings(&t.id).await;
    assert_eq!(view["behaviour_fixed_by_host"], false);
    assert_eq!(view["feature"], json!({ "behaviour": "optional" }));
    assert_eq!(view["settings"], default_settings());

    for ceiling in ["forced", "disabled"] {
        app.set_feature(&t.id, ceiling).await;
        let before = app.tenant_settings(&t.id).await;
        assert_eq!(before["behaviour_fixed_by_host"], true, "{ceiling}");
        assert_eq!(before["feature"]["behaviour"], ceiling);
        // Both are shown: the ceiling users get, and the stored choice kept for later.
        assert_eq!(before["behaviour_in_force"], ceiling);
        assert_eq!(before["settings"]["behaviour"], "optional");
        let stored_behaviour = before["settings"]["behaviour"].clone();

        // Any other behaviour is refused, even one equal to the ceiling itself.
        for other in ["optional", "forced", "disabled"] {
            if json!(other) == stored_behaviour {
                continue;
            }
            let attempt = settings_with(json!({ "behaviour": other, "remember_browser_days": 3 }));
            app.put_json(&path, &attempt).await.assert_error(StatusCode::CONFLICT, "behaviour_fixed_by_host");
            assert_eq!(app.tenant_settings(&t.id).await, before, "{ceiling}/{other}");
        }

        // The options that still apply under the ceiling stay editable.
        let days = if ceiling == "forced" { 30 } else { 45 };
        let allowed = settings_with(json!({
            "behaviour": stored_behaviour,
            "remember_browser_days": days,
            "enrollment_grace_days": 5
        }));
        let saved = app.put_json(&path, &allowed).await.assert_status(StatusCode::OK).json();
        assert_eq!(saved["settings"], allowed);
        assert_eq!(saved["behaviour_fixed_by_host"], true);
        let after = app.tenant_settings(&t.id).await;
        assert_eq!(after["settings"]["remember_browser_days"], days);
        assert_eq!(after["settings"]["enrollment_grace_days"], 5);
    }

    // Lifting the ceiling gives the tenant its behaviour back.
    app.set_feature(&t.id, "optional").await;
    let forced = settings_with(json!({ "behaviour": "forced" }));
    let saved = app.put_json(&path, &forced).await.assert_status(StatusCode::OK).json();
    assert_eq!(saved["behaviour_fixed_by_host"], false);
    assert_eq!(app.tenant_settings(&t.id).await["settings"]["behaviour"], "forced");
}

async fn patch(client: &Client, path: &str, body: &Value) -> crate::helpers::Resp {
    client
        .send(
            client
                .raw(Method::PATCH, path)
                .header("X-Requested-With", "test")
                .header(CONTENT_TYPE, "application/merge-patch+json")
                .body(body.to_string()),
        )
        .await
}

#[tokio::test]
async fn host_and_tenant_settings_have_one_shape() {
    let app = TestApp::spawn_as_admin().await;
    let t = app.create_tenant("acme").await;
    let host = app.get("/api/host/settings").await.assert_status(StatusCode::OK).json();
    let tenant = app.tenant_settings(&t.id).await;
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    assert_eq!(keys(&host), ["behaviour_fixed_by_host", "behaviour_in_force", "settings"], "{host}");
    assert_eq!(keys(&tenant), ["behaviour_fixed_by_host", "behaviour_in_force", "feature", "settings"], "{tenant}");
    assert_eq!(host["settings"], default_settings());
    assert_eq!(host["behaviour_in_force"], "optional");
    assert_eq!(host["behaviour_fixed_by_host"], false);
}

#[tokio::test]
async fn a_merge_patch_changes_only_the_fields_it_names() {
    let app = TestApp::spawn_as_admin().await;
    let t = app.create_tenant("acme").await;
    for path in ["/api/host/settings".to_owned(), format!("/api/tenants/{}/settings", t.id)] {
        let read = async || app.get(&path).await.assert_status(StatusCode::OK).json()["settings"].take();
        let saved =
            patch(&app.client, &path, &json!({ "remember_browser_days": 9, "allowed_providers": { "sms": false } }))
                .await
                .assert_status(StatusCode::OK)
                .json();
        let want = settings_with(json!({
            "remember_browser_days": 9,
            "allowed_providers": { "authenticator": true, "email": true, "sms": false, "passkey": true }
        }));
        assert_eq!(saved["settings"], want, "{path}");
        assert_eq!(read().await, want, "{path}");

        // Each refusal leaves the stored settings exactly as they were.
        for (bad, code) in [
            (json!({ "behaviour": null }), "invalid_body"),
            (json!({ "remember_browser_days": 0 }), "invalid_field"),
            (json!({ "no_such_setting": true }), "invalid_body"),
            (
                json!({ "allowed_providers": { "authenticator": false, "email": false, "sms": false, "passkey": false } }),
                "invalid_field",
            ),
            // A floor none of the allowed providers reaches (passkeys are not set up here).
            (json!({ "min_strength": "phishing_resistant" }), "strength_unreachable"),
            (json!(["remember_browser_days", 3]), "invalid_body"),
            (json!("optional"), "invalid_body"),
        ] {
            patch(&app.client, &path, &bad).await.assert_error(StatusCode::BAD_REQUEST, code);
            assert_eq!(read().await, want, "{path}: {bad}");
        }
        // `null` removes an optional field, which for the country list means empty.
        patch(&app.client, &path, &json!({ "sms_allowed_country_codes": ["44"] })).await.assert_status(StatusCode::OK);
        patch(&app.client, &path, &json!({ "sms_allowed_country_codes": null })).await.assert_status(StatusCode::OK);
        assert_eq!(read().await["sms_allowed_country_codes"], json!([]), "{path}");
    }
}

#[tokio::test]
async fn a_merge_patch_keeps_the_ceiling_rule() {
    let app = TestApp::spawn_as_admin().await;
    let t = app.create_tenant("acme").await;
    let path = format!("/api/tenants/{}/settings", t.id);
    app.set_feature(&t.id, "forced").await;
    let before = app.tenant_settings(&t.id).await;
    patch(&app.client, &path, &json!({ "behaviour": "disabled" }))
        .await
        .assert_error(StatusCode::CONFLICT, "behaviour_fixed_by_host");
    assert_eq!(app.tenant_settings(&t.id).await, before);
    let saved =
        patch(&app.client, &path, &json!({ "enrollment_grace_days": 4 })).await.assert_status(StatusCode::OK).json();
    assert_eq!(saved["settings"]["enrollment_grace_days"], 4);
    assert_eq!(saved["behaviour_in_force"], "forced");
    assert_eq!(saved["settings"]["behaviour"], "optional");
}

/// Two admins patching different fields at the same moment: each patch is applied to
/// what the other stored, so neither change is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_merge_patches_of_different_fields_both_stick() {
    let app = TestApp::spawn_as_admin().await;
    let path = "/api/host/settings";
    for round in 0..5_u32 {
        let days = 2 + round;
        let grace = 10 + round;
        let (days_patch, grace_patch) =
            (json!({ "remember_browser_days": days }), json!({ "enrollment_grace_days": grace }));
        let a = patch(&app.client, path, &days_patch);
        let b = patch(&app.client, path, &grace_patch);
        let (a, b) = tokio::join!(a, b);
        a.assert_status(StatusCode::OK);
        b.assert_status(StatusCode::OK);
        let stored = app.host_settings().await;
        assert_eq!(stored["remember_browser_days"], days, "round {round}: {stored}");
        assert_eq!(stored["enrollment_grace_days"], grace, "round {round}: {stored}");
    }
}

fn impact(users: u64, newly: u64, without_factor: u64, no_longer: u64) -> Value {
    json!({
        "users_in_scope": users,
        "newly_required": newly,
        "newly_required_without_factor": without_factor,
        // Without group rules the scope's strength is the weakest, which any factor meets.
        "newly_required_without_strength": without_factor,
        "no_longer_required": no_longer,
        "newly_short_of_strength": 0
    })
}

async fn preview(client: &Client, path: &str, body: Value) -> Value {
    client.post_json(path, &body).await.assert_status(StatusCode::OK).json()
}

#[tokio::test]
async fn feature_preview_counts_who_would_be_affected_and_saves_nothing() {
    let app = TestApp::spawn_as_admin().await;
    let t = app.create_tenant("acme").await;
    let u1 = app.create_tenant_user(&t.id, "u1", PASSWORD).await;
    let u2 = app.create_tenant_user(&t.id, "u2", PASSWORD).await;
    app.create_tenant_user(&t.id, "u3", PASSWORD).await;
    app.set_two_factor(&u1.id, true).await.assert_status(StatusCode::OK);
    let path = format!("/api/tenants/{}/feature/preview", t.id);
    let audit_before = app.audit("").await.len();

    // u1 already has 2FA on; u2 and u3 would newly need it, neither has a factor.
    let forced = json!({ "feature": { "behaviour": "forced" } });
    assert_eq!(preview(&app, &path, forced.clone()).await, impact(3, 2, 2, 0));
    let disabled = json!({ "feature": { "behaviour": "disabled" } });
    assert_eq!(preview(&app, &path, disabled).await, impact(3, 0, 0, 1));
    let same = json!({ "feature": { "behaviour": "optional" } });
    assert_eq!(preview(&app, &path, same).await, impact(3, 0, 0, 0));

    app.give_factor(&u2.id).await;
    assert_eq!(preview(&app, &path, forced).await, impact(3, 2, 1, 0));

    app.post_json(&path, &json!({ "feature": { "behaviour": "sometimes" } }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_body");

    // Nothing was saved: not the feature, not anyone's policy, not an audit event.
    assert_eq!(app.feature(&t.id).await, json!({ "behaviour": "optional" }));
    assert_eq!(app.policy(&u2.id).await["required"], false);
    assert_eq!(app.audit("").await.len(), audit_before);
}

#[tokio::test]
async fn host_settings_preview_counts_host_users_and_saves_nothing() {
    let app = TestApp::spawn_as_admin().await;
    let h1 = app.create_host_user("h1", PASSWORD).await;
    let h2 = app.create_host_user("h2", PASSWORD).await;
    // A tenant's users are never in the host's scope.
    let t = app.create_tenant("acme").await;
    app.create_tenant_user(&t.id, "outsider", PASSWORD).await;
    app.set_two_factor(&h1.id, true).await.assert_status(StatusCode::OK);
    let path = "/api/host/settings/preview";

    // Host users: admin, h1 (switch on), h2.
    let forced = json!({ "settings": settings_with(json!({ "behaviour": "forced" })) });
    assert_eq!(preview(&app, path, forced.clone()).await, impact(3, 2, 2, 0));
    app.give_factor(&h2.id).await;
    assert_eq!(preview(&app, path, forced).await, impact(3, 2, 1, 0));
    let disabled = json!({ "settings": settings_with(json!({ "behaviour": "disabled" })) });
    assert_eq!(preview(&app, path, disabled).await, impact(3, 0, 0, 1));

    app.post_json(path, &json!({ "settings": settings_with(json!({ "remember_browser_days": 0 })) }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_field");
    assert_eq!(app.host_settings().await, default_settings());
}

#[tokio::test]
async fn tenant_settings_preview_respects_the_ceiling_and_saves_nothing() {
    let app = TestApp::spawn_as_admin().await;
    let t = app.create_tenant("acme").await;
    let u1 = app.create_tenant_user(&t.id, "u1", PASSWORD).await;
    app.create_tenant_user(&t.id, "u2", PASSWORD).await;
    app.create_tenant_user(&t.id, "u3", PASSWORD).await;
    app.set_two_factor(&u1.id, true).await.assert_status(StatusCode::OK);
    let path = format!("/api/tenants/{}/settings/preview", t.id);
    let forced = json!({ "settings": settings_with(json!({ "behaviour": "forced" })) });
    let disabled = json!({ "settings": settings_with(json!({ "behaviour": "disabled" })) });

    assert_eq!(preview(&app, &path, forced.clone()).await, impact(3, 2, 2, 0));
    assert_eq!(preview(&app, &path, disabled.clone()).await, impact(3, 0, 0, 1));

    // Under a forced ceiling the tenant's own behaviour decides nothing.
    app.set_feature(&t.id, "forced").await;
    assert_eq!(preview(&app, &path, disabled).await, impact(3, 0, 0, 0));
    assert_eq!(preview(&app, &path, forced).await, impact(3, 0, 0, 0));

    assert_eq!(app.tenant_settings(&t.id).await["settings"], default_settings());
}

#[tokio::test]
async fn previews_need_the_same_rights_as_the_change() {
    let app = TestApp::spawn_as_admin().await;
    let (t, _, tadmin) = app.tenant_with_admin("acme", "ada").await;
    let settings = json!({ "settings": settings_with(json!({ "behaviour": "forced" })) });

    // A tenant admin may preview their own settings (they may change them)...
    tadmin.post_json(&format!("/api/tenants/{}/settings/preview", t.id), &settings).await.assert_status(StatusCode::OK);
    // ...but not the feature (only the host sets it) nor the host's settings.
    tadmin
        .post_json(
            &format!("/api/tenants/{}/feature/preview", t.id),
            &json!({ "feature": { "behaviour": "disabled" } }),
        )
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    tadmin.post_json("/api/host/settings/preview", &settings).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
}
