//! Tenants and their 2FA feature: creation and its refusals, search and paging,
//! unknown ids, the feature (ceiling), and the wall between one tenant's admin and
//! everything that is not theirs.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, settings_with};

#[tokio::test]
async fn a_created_tenant_can_be_read_back() {
    let app = TestApp::spawn_as_admin().await;
    let created = app
        .post_json("/api/tenants", &json!({ "name": "  Acme-1 ", "display_name": "Acme One" }))
        .await
        .assert_status(StatusCode::CREATED)
        .json();
    // Names are what users type at sign-in: trimmed and lowercased.
    assert_eq!(created["name"], "acme-1");
    assert_eq!(created["display_name"], "Acme One");
    let id = created["id"].as_str().expect("id");
    uuid::Uuid::parse_str(id).expect("the id is a UUID");
    let at = created["created_at"].as_str().expect("created_at");
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).expect("created_at is RFC 3339");

    let read = app.get(&format!("/api/tenants/{id}")).await.assert_status(StatusCode::OK).json();
    assert_eq!(read, created);

    // Without a display name, the name stands in.
    let plain = app.create_tenant("globex").await;
    assert_eq!(plain.display_name, "globex");
}

#[tokio::test]
async fn tenant_names_are_unique_ignoring_case() {
    let app = TestApp::spawn_as_admin().await;
    app.create_tenant("acme").await;
    for dup in ["acme", "ACME", " Acme "] {
        app.post_json("/api/tenants", &json!({ "name": dup })).await.assert_error(StatusCode::CONFLICT, "name_taken");
    }
    let page = app.get("/api/tenants").await.assert_status(StatusCode::OK).json();
    assert_eq!(page["total"], 1);
}

#[tokio::test]
async fn invalid_tenant_input_names_the_field() {
    let app = TestApp::spawn_as_admin().await;
    let long = "x".repeat(64);
    for bad in ["a", "", "-acme", "acme-", "acme corp", "acmé", "host", long.as_str()] {
        let body = app
            .post_json("/api/tenants", &json!({ "name": bad }))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_field");
        assert_eq!(body["field"], "name", "{bad:?}: {body}");
    }
    let body = app
        .post_json("/api/tenants", &json!({ "name": "acme", "display_name": "x".repeat(201) }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_field");
    assert_eq!(body["field"], "display_name");
    app.post_json("/api/tenants", &json!({ "name": "acme", "plan": "gold" }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_body");

    let page = app.get("/api/tenants").await.assert_status(StatusCode::OK).json();
    assert_eq!(page["total"], 0, "a refused tenant was stored: {page}");
}

fn names(page: &Value) -> Vec<String> {
    page["items"].as_array().expect("items").iter().map(|t| t["name"].as_str().expect("name").to_owned()).collect()
}

#[tokio::test]
async fn tenant_list_searches_and_pages() {
    let app = TestApp::spawn_as_admin().await;
    for i in 1..=25 {
        app.create_tenant(&format!("org-{i:02}")).await;
    }
    // Tenants the search for "org" must not find...
    app.create_tenant("zeta").await;
    app.create_tenant("beta").await;
    // ...and one it finds through its display name only.
    app.post_json("/api/tenants", &json!({ "name": "food", "display_name": "Organic Foods" }))
        .await
        .assert_status(StatusCode::CREATED);

    let all = app.get("/api/tenants").await.assert_status(StatusCode::OK).json();
    assert_eq!(all["total"], 28);

    let mut seen = Vec::new();
    for (page, expected_len) in [(1, 10), (2, 10), (3, 6)] {
        let body =
            app.get(&format!("/api/tenants?q=org&per_page=10&page={page}")).await.assert_status(StatusCode::OK).json();
        assert_eq!(body["total"], 26, "{body}");
        assert_eq!(body["page"], page);
        assert_eq!(body["per_page"], 10);
        let got = names(&body);
        assert_eq!(got.len(), expected_len, "page {page}: {got:?}");
        seen.extend(got);
    }
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a tenant appeared twice: {seen:?}");
    assert!(unique.contains("food") && !unique.contains("zeta") && !unique.contains("beta"));

    // Only the org-NN tenants: 25, and page 3 of 10 holds the last 5, in name order.
    let body = app.get("/api/tenants?q=org-&per_page=10&page=3").await.assert_status(StatusCode::OK).json();
    assert_eq!(body["total"], 25);
    assert_eq!(names(&body), ["org-21", "org-22", "org-23", "org-24", "org-25"]);
    let past_the_end = app.get("/api/tenants?q=org-&per_page=10&page=4").await.assert_status(StatusCode::OK).json();
    assert_eq!(past_the_end["items"], json!([]));
    assert_eq!(past_the_end["total"], 25);

    // Search ignores case, and LIKE wildcards in the search text are literal.
    let body = app.get("/api/tenants?q=ORGANIC").await.json();
    assert_eq!(names(&body), ["food"]);
    for wildcard in ["%25", "_"] {
        let body = app.get(&format!("/api/tenants?q={wildcard}")).await.json();
        assert_eq!(body["total"], 0, "q={wildcard}: {body}");
    }
    // Page sizes are bounded.
    let body = app.get("/api/tenants?per_page=1000").await.json();
    assert_eq!(body["per_page"], 100);
}

#[tokio::test]
async fn unknown_tenants_are_not_found() {
    let app = TestApp::spawn_as_admin().await;
    let unknown = uuid::Uuid::now_v7().to_string();
    for id in [unknown.as_str(), "not-a-uuid", "1"] {
        for suffix in ["", "/feature", "/settings", "/users"] {
            app.get(&format!("/api/tenants/{id}{suffix}")).await.assert_error(StatusCode::NOT_FOUND, "not_found");
        }
        app.put_json(&format!("/api/tenants/{id}/feature"), &json!({ "behaviour": "forced" }))
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn the_feature_starts_optional_and_can_be_set() {
    let app = TestApp::spawn_as_admin().await;
    let t = app.create_tenant("acme").await;
    assert_eq!(app.feature(&t.id).await, json!({ "behaviour": "optional" }));

    app.set_feature(&t.id, "forced").await;
    assert_eq!(app.feature(&t.id).await, json!({ "behaviour": "forced" }));
    let view = app.tenant_settings(&t.id).await;
    assert_eq!(view["behaviour_fixed_by_host"], true);
    assert_eq!(view["feature"], json!({ "behaviour": "forced" }));

    app.put_json(&format!("/api/tenants/{}/feature", t.id), &json!({ "behaviour": "sometimes" }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_body");
    assert_eq!(app.feature(&t.id).await, json!({ "behaviour": "forced" }));

    app.set_feature(&t.id, "disabled").await;
    assert_eq!(app.feature(&t.id).await, json!({ "behaviour": "disabled" }));
}

/// Everything about a tenant that its admin's attempts must leave untouched.
async fn snapshot(app: &TestApp, tenant_id: &str, user_id: &str) -> Value {
    json!({
        "tenant": app.get(&format!("/api/tenants/{tenant_id}")).await.json(),
        "settings": app.tenant_settings(tenant_id).await,
        "feature": app.feature(tenant_id).await,
        "users": app.get(&format!("/api/tenants/{tenant_id}/users")).await.json(),
        "user": app.get(&format!("/api/users/{user_id}")).await.json(),
        "policy": app.policy(user_id).await,
    })
}

#[tokio::test]
async fn a_tenant_admin_is_confined_to_their_own_tenant() {
    let app = TestApp::spawn_as_admin().await;
    let (a, alice, ta) = app.tenant_with_admin("acme", "alice").await;
    let b = app.create_tenant("globex").await;
    let bob = app.create_tenant_user(&b.id, "bob", PASSWORD).await;
    let host_user = app.create_host_user("hank", PASSWORD).await;

    let me = ta.me().await.assert_status(StatusCode::OK).json();
    assert!(
        me["roles"].as_array().expect("roles").contains(&json!({ "role": "tenant_admin", "tenant_id": a.id })),
        "{me}"
    );

    // What is theirs.
    ta.get(&format!("/api/tenants/{}", a.id)).await.assert_status(StatusCode::OK);
    let view = ta.tenant_settings(&a.id).await;
    assert_eq!(view["behaviour_fixed_by_host"], false);
    let mine = settings_with(json!({ "behaviour": "forced", "remember_browser_days": 7 }));
    ta.put_json(&format!("/api/tenants/{}/settings", a.id), &mine).await.assert_status(StatusCode::OK);
    assert_eq!(app.tenant_settings(&a.id).await["settings"], mine);
    let users = ta.get(&format!("/api/tenants/{}/users", a.id)).await.assert_status(StatusCode::OK).json();
    assert_eq!(users["total"], 1);
    let carol = ta.create_tenant_user(&a.id, "carol", PASSWORD).await;
    assert_eq!(carol.tenant_id.as_deref(), Some(a.id.as_str()));
    ta.get(&format!("/api/users/{}", alice.id)).await.assert_status(StatusCode::OK);
    ta.get(&format!("/api/audit?tenant_id={}", a.id)).await.assert_status(StatusCode::OK);
    assert_eq!(ta.feature(&a.id).await, json!({ "behaviour": "optional" }));

    let b_before = snapshot(&app, &b.id, &bob.id).await;
    let host_before = app.host_settings().await;
    let tenants_before = app.get("/api/tenants").await.json();

    // What is not: the host decides their tenant's ceiling...
    ta.put_json(&format!("/api/tenants/{}/feature", a.id), &json!({ "behaviour": "disabled" }))
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    // ...and nothing of another tenant or of the host is theirs to see or touch.
    let other = settings_with(json!({ "behaviour": "disabled" }));
    let attempts = [
        ta.get(&format!("/api/tenants/{}", b.id)).await,
        ta.get(&format!("/api/tenants/{}/settings", b.id)).await,
        ta.put_json(&format!("/api/tenants/{}/settings", b.id), &other).await,
        ta.get(&format!("/api/tenants/{}/feature", b.id)).await,
        ta.put_json(&format!("/api/tenants/{}/feature", b.id), &json!({ "behaviour": "forced" })).await,
        ta.get(&format!("/api/tenants/{}/users", b.id)).await,
        ta.post_json(&format!("/api/tenants/{}/users", b.id), &json!({ "username": "mallory", "password": PASSWORD }))
            .await,
        ta.get(&format!("/api/users/{}", bob.id)).await,
        ta.get(&format!("/api/users/{}/policy", bob.id)).await,
        ta.put_json(&format!("/api/users/{}/two-factor", bob.id), &json!({ "enabled": true })).await,
        ta.post_json(&format!("/api/tenants/{}/admins", b.id), &json!({ "user_id": alice.id })).await,
        ta.get(&format!("/api/audit?tenant_id={}", b.id)).await,
        ta.get("/api/host/settings").await,
        ta.put_json("/api/host/settings", &other).await,
        ta.get("/api/host/users").await,
        ta.get(&format!("/api/users/{}", host_user.id)).await,
        ta.get("/api/tenants").await,
        ta.post_json("/api/tenants", &json!({ "name": "initech" })).await,
        ta.get("/api/audit").await,
        ta.get("/api/audit?tenant_id=host").await,
    ];
    for (i, resp) in attempts.iter().enumerate() {
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "attempt {i}: {}", resp.text());
        resp.assert_error(StatusCode::FORBIDDEN, "forbidden");
    }

    assert_eq!(snapshot(&app, &b.id, &bob.id).await, b_before);
    assert_eq!(app.host_settings().await, host_before);
    assert_eq!(app.get("/api/tenants").await.json(), tenants_before);
    assert_eq!(app.feature(&a.id).await, json!({ "behaviour": "optional" }));
}
