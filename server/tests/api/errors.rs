//! The API's refusals as a whole: one JSON error shape everywhere, the anti-CSRF header
//! on every write, no access without a session, and 403 for signed-in users without
//! the right role.

use reqwest::header::COOKIE;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, settings_with};

#[tokio::test]
async fn unknown_api_routes_answer_in_the_error_shape() {
    // Paths outside /api belong to the web app; under /api every answer is JSON.
    let app = TestApp::spawn().await;
    for path in ["/api/nope", "/api/tenants/x/y/z"] {
        app.get(path).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    app.post_json("/api/nope", &json!({})).await.assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn writes_without_the_csrf_header_are_refused_and_change_nothing() {
    let app = TestApp::spawn_as_admin().await;
    let t = app.create_tenant("acme").await;
    let u = app.create_tenant_user(&t.id, "tina", PASSWORD).await;
    app.make_tenant_admin(&t.id, &u.id).await;
    let settings_before = app.host_settings().await;
    let tenants_before = app.get("/api/tenants").await.json();

    let forced = settings_with(json!({ "behaviour": "forced" }));
    let attempts = [
        app.raw(Method::PUT, "/api/host/settings").json(&forced),
        app.raw(Method::POST, "/api/tenants").json(&json!({ "name": "globex" })),
        app.raw(Method::PUT, &format!("/api/tenants/{}/feature", t.id)).json(&json!({ "behaviour": "forced" })),
        app.raw(Method::PUT, &format!("/api/users/{}/two-factor", u.id)).json(&json!({ "enabled": true })),
        app.raw(Method::DELETE, &format!("/api/tenants/{}/admins/{}", t.id, u.id)),
        app.raw(Method::POST, "/api/auth/sign-out"),
    ];
    for req in attempts {
        app.send(req).await.assert_error(StatusCode::FORBIDDEN, "csrf_header_missing");
    }

    assert_eq!(app.host_settings().await, settings_before);
    assert_eq!(app.get("/api/tenants").await.json(), tenants_before);
    assert_eq!(app.feature(&t.id).await, json!({ "behaviour": "optional" }));
    let user = app.get(&format!("/api/users/{}", u.id)).await.json();
    assert_eq!(user["two_factor_enabled"], false);
    assert_eq!(user["roles"], json!([{ "role": "tenant_admin", "tenant_id": t.id }]));
    // The refused sign-out left the session alone.
    app.me().await.assert_status(StatusCode::OK);
}

#[tokio::test]
async fn nothing_is_reachable_without_a_session() {
    let app = TestApp::spawn().await;
    let any_id = uuid::Uuid::now_v7();
    for path in [
        "/api/auth/me".to_owned(),
        "/api/host/settings".to_owned(),
        "/api/host/users".to_owned(),
        "/api/tenants".to_owned(),
        format!("/api/tenants/{any_id}/settings"),
        format!("/api/users/{any_id}/policy"),
        "/api/audit".to_owned(),
    ] {
        app.get(&path).await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    app.put_json("/api/host/settings", &settings_with(json!({ "behaviour": "forced" })))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    app.post_json("/api/tenants", &json!({ "name": "acme" }))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    app.post_json("/api/auth/sign-out", &json!({})).await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");

    // A made-up session token is no session either.
    app.send(app.raw(Method::GET, "/api/host/settings").header(COOKIE, "twofold_session=forged-token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");

    // And none of the attempts above changed anything.
    app.sign_in_admin().await;
    assert_eq!(app.host_settings().await, crate::helpers::default_settings());
    assert_eq!(app.get("/api/tenants").await.json()["total"], 0);
}

#[tokio::test]
async fn plain_users_are_forbidden_admin_actions() {
    let app = TestApp::spawn_as_admin().await;
    let t = app.create_tenant("acme").await;
    let tina = app.create_tenant_user(&t.id, "tina", PASSWORD).await;
    app.create_host_user("hank", PASSWORD).await;
    let tina_c = app.new_client();
    tina_c.sign_in_ok(Some("acme"), "tina", PASSWORD).await;
    let hank_c = app.new_client();
    hank_c.sign_in_ok(None, "hank", PASSWORD).await;

    for c in [&tina_c, &hank_c] {
        for path in [
            "/api/host/settings".to_owned(),
            "/api/host/users".to_owned(),
            "/api/tenants".to_owned(),
            format!("/api/tenants/{}/settings", t.id),
            format!("/api/tenants/{}/users", t.id),
            format!("/api/users/{}", tina.id),
            "/api/audit".to_owned(),
            format!("/api/audit?tenant_id={}", t.id),
        ] {
            c.get(&path).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
        }
        c.put_json(&format!("/api/users/{}/two-factor", tina.id), &json!({ "enabled": true }))
            .await
            .assert_error(StatusCode::FORBIDDEN, "forbidden");
    }
    assert_eq!(app.policy(&tina.id).await["user_two_factor_enabled"], false);
}

#[tokio::test]
async fn bad_query_parameters_are_refused() {
    let app = TestApp::spawn_as_admin().await;
    for path in
        ["/api/tenants?per_page=ten", "/api/tenants?page=-1", "/api/tenants?sort=name", "/api/host/users?limit=5"]
    {
        app.get(path).await.assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
}

#[tokio::test]
async fn a_wrong_method_answers_in_the_error_shape() {
    let app = TestApp::spawn_as_admin().await;
    let resp = app.delete("/api/host/settings").await;
    resp.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let allow = resp.headers["allow"].to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("PUT"), "{allow}");
}
