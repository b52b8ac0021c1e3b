//! Users: creation and its refusals, the effective policy with its explanation, the
//! admin's 2FA switch, cache invalidation after a settings change, the security stamp
//! that ends sessions, and granting and revoking the tenant-admin role.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Client, PASSWORD, TestApp, settings_with};

#[tokio::test]
async fn users_are_created_in_the_host_and_in_tenants() {
    let app = TestApp::spawn_as_admin().await;
    let carol = app
        .post_json(
            "/api/host/users",
            &json!({ "username": "Carol", "password": PASSWORD, "email": "carol@example.com" }),
        )
        .await
        .assert_status(StatusCode::CREATED)
        .json();
    assert_eq!(carol["username"], "Carol");
    assert_eq!(carol["email"], "carol@example.com");
    assert_eq!(carol["tenant_id"], Value::Null);
    assert_eq!(carol["two_factor_enabled"], false);
    assert_eq!(carol["has_factor"], false);
    assert_eq!(carol["roles"], json!([]));
    let id = carol["id"].as_str().expect("id");
    uuid::Uuid::parse_str(id).expect("a UUID");
    let read = app.get(&format!("/api/users/{id}")).await.assert_status(StatusCode::OK).json();
    assert_eq!(read, carol);

    let t = app.create_tenant("acme").await;
    let dave = app.create_tenant_user(&t.id, "dave", PASSWORD).await;
    assert_eq!(dave.tenant_id.as_deref(), Some(t.id.as_str()));
    assert_eq!(dave.email, None);

    let host = app.get("/api/host/users").await.assert_status(StatusCode::OK).json();
    assert_eq!(host["total"], 2, "admin and Carol: {host}");
    let tenant = app.get(&format!("/api/tenants/{}/users", t.id)).await.assert_status(StatusCode::OK).json();
    assert_eq!(tenant["total"], 1);
    assert_eq!(tenant["items"][0]["username"], "dave");

    // The new users can sign in with the password they were given.
    app.new_client().sign_in_ok(None, "carol", PASSWORD).await;
    app.new_client().sign_in_ok(Some("acme"), "dave", PASSWORD).await;
}

#[tokio::test]
async fn user_names_are_unique_per_scope_ignoring_case() {
    let app = TestApp::spawn_as_admin().await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    app.create_host_user("Carol", PASSWORD).await;
    for dup in ["carol", "CAROL", "Carol"] {
        app.post_json("/api/host/users", &json!({ "username": dup, "password": PASSWORD }))
            .await
            .assert_error(StatusCode::CONFLICT, "username_taken");
    }
    // Another scope is another namespace.
    app.create_tenant_user(&acme.id, "carol", PASSWORD).await;
    app.post_json(&format!("/api/tenants/{}/users", acme.id), &json!({ "username": "CaRoL", "password": PASSWORD }))
        .await
        .assert_error(StatusCode::CONFLICT, "username_taken");
    app.create_tenant_user(&globex.id, "carol", PASSWORD).await;
}

#[tokio::test]
async fn bad_user_input_names_the_field_and_creates_nobody() {
    let app = TestApp::spawn_as_admin().await;
    let cases = [
        (json!({ "username": "erin", "password": "short" }), "password"),
        (json!({ "username": "erin", "password": "x".repeat(257) }), "password"),
        (json!({ "username": "e rin", "password": PASSWORD }), "username"),
        (json!({ "username": "", "password": PASSWORD }), "username"),
        (json!({ "username": "erin", "password": PASSWORD, "email": "not-an-address" }), "email"),
    ];
    for (body, field) in cases {
        let err = app.post_json("/api/host/users", &body).await.assert_error(StatusCode::BAD_REQUEST, "invalid_field");
        assert_eq!(err["field"], field, "{body}: {err}");
    }
    app.post_json("/api/host/users", &json!({ "username": "erin", "password": PASSWORD, "role": "host_admin" }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_body");
    let host = app.get("/api/host/users").await.json();
    assert_eq!(host["total"], 1, "only the admin: {host}");
}

#[tokio::test]
async fn unknown_users_are_not_found() {
    let app = TestApp::spawn_as_admin().await;
    let unknown = uuid::Uuid::now_v7().to_string();
    for id in [unknown.as_str(), "not-a-uuid"] {
        for suffix in ["", "/policy"] {
            app.get(&format!("/api/users/{id}{suffix}")).await.assert_error(StatusCode::NOT_FOUND, "not_found");
        }
        app.set_two_factor(id, true).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn user_lists_search_by_name() {
    let app = TestApp::spawn_as_admin().await;
    let t = app.create_tenant("acme").await;
    for name in ["carol", "caroline", "dave"] {
        app.create_tenant_user(&t.id, name, PASSWORD).await;
    }
    let page = app.get(&format!("/api/tenants/{}/users?q=CAROL", t.id)).await.assert_status(StatusCode::OK).json();
    assert_eq!(page["total"], 2);
    let names: Vec<&str> =
        page["items"].as_array().expect("items").iter().map(|u| u["username"].as_str().expect("username")).collect();
    assert_eq!(names, ["carol", "caroline"]);
}

#[tokio::test]
async fn the_policy_explains_which_level_decided() {
    let app = TestApp::spawn_as_admin().await;
    let t = app.create_tenant("acme").await;
    let u = app.create_tenant_user(&t.id, "tina", PASSWORD).await;

    let p = app.policy(&u.id).await;
    assert_eq!(p["user_id"], u.id.as_str());
    assert_eq!(p["decided_by"], "user");
    assert_eq!(p["required"], false);
    assert_eq!(p["behaviour"], "optional");
    assert_eq!(p["user_can_change"], true);
    assert_eq!(p["admin_can_override"], true);
    assert_eq!(p["scope"], "tenant");
    assert_eq!(p["tenant_feature"], "optional");
    let trace = p["trace"].as_array().expect("trace");
    assert!(!trace.is_empty() && trace.iter().all(|s| s.as_str().is_some_and(|s| !s.is_empty())));
    assert!(p["summary"].as_str().is_some_and(|s| !s.is_empty()), "{p}");

    // The tenant's own settings decide while the ceiling is optional.
    let path = format!("/api/tenants/{}/settings", t.id);
    app.put_json(&path, &settings_with(json!({ "behaviour": "forced" }))).await.assert_status(StatusCode::OK);
    let p2 = app.policy(&u.id).await;
    assert_eq!(p2["decided_by"], "tenant_settings");
    assert_eq!(p2["required"], true);
    app.put_json(&path, &settings_with(json!({}))).await.assert_status(StatusCode::OK);

    app.set_feature(&t.id, "forced").await;
    let p3 = app.policy(&u.id).await;
    assert_eq!(p3["decided_by"], "tenant_feature");
    assert_eq!(p3["required"], true);
    assert_eq!(p3["behaviour"], "forced");
    assert_eq!(p3["user_can_change"], false);
    assert_eq!(p3["admin_can_override"], false);
    assert_eq!(p3["tenant_feature"], "forced");
    assert_ne!(p3["trace"], p["trace"], "the explanation must follow the decision");

    app.set_feature(&t.id, "disabled").await;
    let p4 = app.policy(&u.id).await;
    assert_eq!(p4["decided_by"], "tenant_feature");
    assert_eq!(p4["required"], false);
}

#[tokio::test]
async fn an_admin_sets_the_switch_only_while_2fa_is_optional() {
    let app = TestApp::spawn_as_admin().await;
    let t = app.create_tenant("acme").await;
    let u = app.create_tenant_user(&t.id, "tina", PASSWORD).await;

    let p = app.set_two_factor(&u.id, true).await.assert_status(StatusCode::OK).json();
    assert_eq!(p["required"], true);
    assert_eq!(p["decided_by"], "user");
    assert_eq!(p["user_two_factor_enabled"], true);
    let user = app.get(&format!("/api/users/{}", u.id)).await.json();
    assert_eq!(user["two_factor_enabled"], true);
    let p = app.set_two_factor(&u.id, false).await.assert_status(StatusCode::OK).json();
    assert_eq!(p["required"], false);

    app.put_json(&format!("/api/users/{}/two-factor", u.id), &json!({ "enabled": "yes" }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_body");

    // Under a forced or disabled ceiling the switch would do nothing: refused, not
    // stored silently.
    for ceiling in ["forced", "disabled"] {
        app.set_feature(&t.id, ceiling).await;
        app.set_two_factor(&u.id, true).await.assert_error(StatusCode::CONFLICT, "not_optional");
        let user = app.get(&format!("/api/users/{}", u.id)).await.json();
        assert_eq!(user["two_factor_enabled"], false, "{ceiling}");
    }
    // The same holds when the tenant's own settings force it.
    app.set_feature(&t.id, "optional").await;
    app.put_json(&format!("/api/tenants/{}/settings", t.id), &settings_with(json!({ "behaviour": "forced" })))
        .await
        .assert_status(StatusCode::OK);
    app.set_two_factor(&u.id, true).await.assert_error(StatusCode::CONFLICT, "not_optional");
}

#[tokio::test]
async fn a_disabled_ceiling_keeps_the_users_switch_for_later() {
    let app = TestApp::spawn_as_admin().await;
    let t = app.create_tenant("acme").await;
    let u = app.create_tenant_user(&t.id, "tina", PASSWORD).await;
    app.set_two_factor(&u.id, true).await.assert_status(StatusCode::OK);

    app.set_feature(&t.id, "disabled").await;
    let p = app.policy(&u.id).await;
    assert_eq!(p["required"], false);
    assert_eq!(p["user_two_factor_enabled"], true);

    app.set_feature(&t.id, "optional").await;
    assert_eq!(app.policy(&u.id).await["required"], true);
}

#[tokio::test]
async fn host_settings_changes_are_seen_at_once_and_only_by_host_users() {
    let app = TestApp::spawn_as_admin().await;
    let hank = app.create_host_user("hank", PASSWORD).await;
    let t = app.create_tenant("acme").await;
    let tina = app.create_tenant_user(&t.id, "tina", PASSWORD).await;

    // These reads fill the settings cache (its time-to-live is 30 s), so the reads
    // after the change only see it if the write invalidated the cache.
    let p = app.policy(&hank.id).await;
    assert_eq!(p["required"], false);
    let tina_before = app.policy(&tina.id).await;

    app.put_host_settings(&settings_with(json!({ "behaviour": "forced" }))).await;

    let p = app.policy(&hank.id).await;
    assert_eq!(p["required"], true, "{p}");
    assert_eq!(p["decided_by"], "host_settings");

    // Hank has no factor: the password is right, but no session may be granted.
    let hank_client = app.new_client();
    let resp = hank_client.sign_in(None, "hank", PASSWORD).await.assert_status(StatusCode::OK);
    assert_eq!(resp.json()["status"], "requires_enrollment");
    assert!(resp.set_cookie("twofold_session").is_none(), "{:?}", resp.set_cookies());
    assert!(resp.json().get("user").is_none_or(Value::is_null));
    hank_client.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");

    // Host settings never reach tenant users.
    assert_eq!(app.policy(&tina.id).await, tina_before);
    app.new_client().sign_in_ok(Some("acme"), "tina", PASSWORD).await;
}

#[tokio::test]
async fn tenant_settings_and_feature_changes_are_seen_at_once() {
    let app = TestApp::spawn_as_admin().await;
    let t = app.create_tenant("acme").await;
    let tina = app.create_tenant_user(&t.id, "tina", PASSWORD).await;
    assert_eq!(app.policy(&tina.id).await["required"], false);

    app.put_json(&format!("/api/tenants/{}/settings", t.id), &settings_with(json!({ "behaviour": "forced" })))
        .await
        .assert_status(StatusCode::OK);
    let p = app.policy(&tina.id).await;
    assert_eq!((p["required"].clone(), p["decided_by"].clone()), (json!(true), json!("tenant_settings")));

    app.set_feature(&t.id, "disabled").await;
    let p = app.policy(&tina.id).await;
    assert_eq!((p["required"].clone(), p["decided_by"].clone()), (json!(false), json!("tenant_feature")));
    // The sign-in pipeline reads the same cache as the policy view.
    app.new_client().sign_in_ok(Some("acme"), "tina", PASSWORD).await;
}

#[tokio::test]
async fn changing_a_users_switch_ends_their_sessions() {
    let app = TestApp::spawn_as_admin().await;
    let t = app.create_tenant("acme").await;
    let tina = app.create_tenant_user(&t.id, "tina", PASSWORD).await;
    app.create_tenant_user(&t.id, "tom", PASSWORD).await;
    let tina_c = app.new_client();
    tina_c.sign_in_ok(Some("acme"), "tina", PASSWORD).await;
    let tom_c = app.new_client();
    tom_c.sign_in_ok(Some("acme"), "tom", PASSWORD).await;
    tina_c.me().await.assert_status(StatusCode::OK);

    app.set_two_factor(&tina.id, true).await.assert_status(StatusCode::OK);

    tina_c.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    // Only the changed user's sessions end.
    tom_c.me().await.assert_status(StatusCode::OK);
    app.me().await.assert_status(StatusCode::OK);
    // And signing in again now meets the new policy.
    let again = tina_c.sign_in(Some("acme"), "tina", PASSWORD).await.assert_status(StatusCode::OK);
    assert_eq!(again.json()["status"], "requires_enrollment");
}

async fn roles_of(app: &Client, user_id: &str) -> Value {
    app.get(&format!("/api/users/{user_id}")).await.assert_status(StatusCode::OK).json()["roles"].clone()
}

#[tokio::test]
async fn the_tenant_admin_role_is_granted_and_revoked_within_the_tenant() {
    let app = TestApp::spawn_as_admin().await;
    let a = app.create_tenant("acme").await;
    let b = app.create_tenant("globex").await;
    let ann = app.create_tenant_user(&a.id, "ann", PASSWORD).await;
    let bob = app.create_tenant_user(&b.id, "bob", PASSWORD).await;
    let hank = app.create_host_user("hank", PASSWORD).await;
    let admins = format!("/api/tenants/{}/admins", a.id);

    // Only a member of the tenant can become its admin.
    for outsider in [bob.id.as_str(), hank.id.as_str(), "not-a-uuid"] {
        app.post_json(&admins, &json!({ "user_id": outsider })).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    assert_eq!(roles_of(&app, &bob.id).await, json!([]));

    let ann_c = app.new_client();
    ann_c.sign_in_ok(Some("acme"), "ann", PASSWORD).await;
    let settings = format!("/api/tenants/{}/settings", a.id);
    ann_c.get(&settings).await.assert_error(StatusCode::FORBIDDEN, "forbidden");

    let granted = app.make_tenant_admin(&a.id, &ann.id).await;
    let expected = json!([{ "role": "tenant_admin", "tenant_id": a.id }]);
    assert_eq!(json!(granted.roles), expected);
    // Granting twice is harmless and does not duplicate the role.
    app.make_tenant_admin(&a.id, &ann.id).await;
    assert_eq!(roles_of(&app, &ann.id).await, expected);
    // The grant applies to the session ann already has.
    ann_c.get(&settings).await.assert_status(StatusCode::OK);

    app.delete(&format!("{admins}/{}", bob.id)).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    app.delete(&format!("{admins}/{}", ann.id)).await.assert_status(StatusCode::NO_CONTENT);
    assert_eq!(roles_of(&app, &ann.id).await, json!([]));
    ann_c.get(&settings).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let me = ann_c.me().await.assert_status(StatusCode::OK).json();
    assert_eq!(me["roles"], json!([]));
}
