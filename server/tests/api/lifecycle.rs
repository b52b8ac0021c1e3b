//! The account lifecycle: deactivating and reactivating users, deleting them (personal
//! data erased from the audit trail, the events kept), suspending, resuming and
//! deleting tenants, and sessions listed and ended one by one. On both databases.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Client, PASSWORD, TestApp};

async fn wrong_password_answer(client: &Client, tenant: Option<&str>, username: &str) -> Value {
    let resp = client.sign_in(tenant, username, "not the password at all").await;
    resp.assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials")
}

fn events_about(events: &[Value], user_id: &str) -> Vec<Value> {
    events.iter().filter(|e| e["target"] == format!("user:{user_id}")).cloned().collect()
}

#[tokio::test]
async fn a_deactivated_user_cannot_sign_in_or_use_a_session_until_reactivated() {
    let app = TestApp::spawn_as_admin().await;
    let (tenant, _, tadmin) = app.tenant_with_admin("acme", "boss").await;
    let alice = app.create_tenant_user(&tenant.id, "alice", PASSWORD).await;
    let session = app.new_client();
    session.sign_in_ok(Some("acme"), "alice", PASSWORD).await;

    tadmin
        .post_json(&format!("/api/users/{}/deactivate", alice.id), &json!({}))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    // Again: nothing changes, no second audit event.
    tadmin
        .post_json(&format!("/api/users/{}/deactivate", alice.id), &json!({}))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    session.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");

    // The right password gets exactly the answer a wrong one gets.
    let stranger = app.new_client();
    let refused = stranger.sign_in(Some("acme"), "alice", PASSWORD).await;
    let refused = refused.assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(refused, wrong_password_answer(&stranger, Some("acme"), "alice").await);
    assert_eq!(refused, wrong_password_answer(&stranger, Some("acme"), "nobody-here").await);

    let user = tadmin.get(&format!("/api/users/{}", alice.id)).await.assert_status(StatusCode::OK).json();
    assert!(user["deactivated_at"].as_str().is_some_and(|s| !s.is_empty()), "{user}");
    let events = app.audit("").await;
    let about = events_about(&events, &alice.id);
    assert_eq!(about.iter().filter(|e| e["action"] == "user.deactivated").count(), 1, "{about:?}");
    assert!(
        about.iter().any(|e| e["action"] == "sign_in.failed" && e["after"]["refused"] == "deactivated"),
        "{about:?}"
    );

    tadmin
        .post_json(&format!("/api/users/{}/reactivate", alice.id), &json!({}))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    let user = tadmin.get(&format!("/api/users/{}", alice.id)).await.assert_status(StatusCode::OK).json();
    assert!(user.get("deactivated_at").is_none_or(Value::is_null), "{user}");
    // The session ended by the deactivation stays ended.
    session.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    stranger.sign_in_ok(Some("acme"), "alice", PASSWORD).await;

    // An admin cannot deactivate or delete themselves.
    let me = tadmin.me().await.json()["id"].as_str().unwrap().to_owned();
    tadmin
        .post_json(&format!("/api/users/{me}/deactivate"), &json!({}))
        .await
        .assert_error(StatusCode::CONFLICT, "not_on_yourself");
    tadmin.delete(&format!("/api/users/{me}")).await.assert_error(StatusCode::CONFLICT, "not_on_yourself");
}

#[tokio::test]
async fn deleting_a_user_erases_them_and_their_personal_data_but_keeps_the_audit_trail() {
    let app = TestApp::spawn_as_admin().await;
    let (tenant, boss, tadmin) = app.tenant_with_admin("acme", "boss").await;
    let created = tadmin
        .post_json(
            &format!("/api/tenants/{}/users", tenant.id),
            &json!({ "username": "alice", "password": PASSWORD, "email": "alice@example.com" }),
        )
        .await
        .assert_status(StatusCode::CREATED)
        .json();
    let alice_id = created["id"].as_str().unwrap().to_owned();
    let session = app.new_client();
    session.sign_in_ok(Some("acme"), "alice", PASSWORD).await;
    // A second admin's role goes with the user: deleting `boss` later must not leave it.
    app.make_tenant_admin(&tenant.id, &alice_id).await;

    tadmin.delete(&format!("/api/users/{alice_id}")).await.assert_status(StatusCode::NO_CONTENT);
    tadmin.get(&format!("/api/users/{alice_id}")).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    tadmin.delete(&format!("/api/users/{alice_id}")).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    session.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    wrong_password_answer(&app.new_client(), Some("acme"), "alice").await;
    app.new_client()
        .sign_in(Some("acme"), "alice", PASSWORD)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");

    let events = app.audit("").await;
    let about = events_about(&events, &alice_id);
    let creation = about.iter().find(|e| e["action"] == "user.created").expect("the creation is still recorded");
    assert_eq!(creation["after"]["username"], "erased", "{creation}");
    assert_eq!(creation["after"]["email"], "erased", "{creation}");
    assert!(about.iter().any(|e| e["action"] == "user.deleted"), "{about:?}");
    let everything = serde_json::to_string(&events).unwrap();
    assert!(!everything.contains("alice@example.com"), "{everything}");

    // The name is free again; the new alice is someone else.
    let again = app.create_tenant_user(&tenant.id, "alice", PASSWORD).await;
    assert_ne!(again.id, alice_id);
    let _ = boss;
}

#[tokio::test]
async fn a_suspended_tenant_signs_nobody_in_until_resumed() {
    let app = TestApp::spawn_as_admin().await;
    let (tenant, _, tadmin) = app.tenant_with_admin("acme", "boss").await;
    app.create_tenant_user(&tenant.id, "alice", PASSWORD).await;
    let alice = app.new_client();
    alice.sign_in_ok(Some("acme"), "alice", PASSWORD).await;
    let (other, _, other_admin) = app.tenant_with_admin("other", "boss").await;

    // Only host admins suspend.
    tadmin
        .post_json(&format!("/api/tenants/{}/suspend", tenant.id), &json!({}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.post_json(&format!("/api/tenants/{}/suspend", tenant.id), &json!({}))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    for client in [&alice, &tadmin] {
        client.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    let stranger = app.new_client();
    let refused = stranger.sign_in(Some("acme"), "alice", PASSWORD).await;
    assert_eq!(
        refused.assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials"),
        wrong_password_answer(&stranger, Some("acme"), "alice").await
    );
    let view = app.get(&format!("/api/tenants/{}", tenant.id)).await.assert_status(StatusCode::OK).json();
    assert!(view["suspended_at"].as_str().is_some(), "{view}");
    // Another tenant is untouched.
    other_admin.me().await.assert_status(StatusCode::OK);
    let _ = other;

    app.post_json(&format!("/api/tenants/{}/resume", tenant.id), &json!({}))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    stranger.sign_in_ok(Some("acme"), "alice", PASSWORD).await;
    let view = app.get(&format!("/api/tenants/{}", tenant.id)).await.assert_status(StatusCode::OK).json();
    assert!(view.get("suspended_at").is_none_or(Value::is_null), "{view}");
    let actions: Vec<String> = app
        .audit(&format!("&tenant_id={}", tenant.id))
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        actions.contains(&"tenant.suspended".to_owned()) && actions.contains(&"tenant.resumed".to_owned()),
        "{actions:?}"
    );
}

#[tokio::test]
async fn deleting_a_tenant_removes_its_users_and_settings_in_one_go() {
    let app = TestApp::spawn_as_admin().await;
    let (tenant, boss, tadmin) = app.tenant_with_admin("acme", "boss").await;
    let alice = app.create_tenant_user(&tenant.id, "alice", PASSWORD).await;
    tadmin.delete(&format!("/api/tenants/{}", tenant.id)).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.delete(&format!("/api/tenants/{}", tenant.id)).await.assert_status(StatusCode::NO_CONTENT);
    app.get(&format!("/api/tenants/{}", tenant.id)).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    for id in [&alice.id, &boss.id] {
        app.get(&format!("/api/users/{id}")).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    let pool = &app.running.state.db().pool;
    for (table, column) in [("users", "tenant_id"), ("scope_settings", "scope_key"), ("role_assignments", "scope_key")]
    {
        let left: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table} WHERE {column} = $1")))
                .bind(&tenant.id)
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(left, 0, "{table}");
    }
    // The host keeps the record, without the users' names.
    // (Listed among all events: the audit filter by tenant knows only live tenants.)
    let events = app.audit("").await;
    assert!(
        events.iter().any(|e| e["action"] == "tenant.deleted" && e["tenant_id"] == tenant.id.as_str()),
        "{events:?}"
    );
    let created = events
        .iter()
        .find(|e| e["action"] == "user.created" && e["target"] == format!("user:{}", alice.id))
        .expect("alice's creation is still recorded");
    assert_eq!(created["after"]["username"], "erased", "{created}");
    // The name can be used again, for a new and empty tenant.
    let again = app.create_tenant("acme").await;
    assert_ne!(again.id, tenant.id);
    app.new_client()
        .sign_in(Some("acme"), "alice", PASSWORD)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
}

#[tokio::test]
async fn sessions_are_listed_with_the_current_one_marked_and_end_one_by_one() {
    let app = TestApp::spawn_as_admin().await;
    let tenant = app.create_tenant("acme").await;
    let alice = app.create_tenant_user(&tenant.id, "alice", PASSWORD).await;
    let laptop = app.new_client();
    let phone = app.new_client();
    let tablet = app.new_client();
    for c in [&laptop, &phone, &tablet] {
        c.sign_in_ok(Some("acme"), "alice", PASSWORD).await;
    }

    let list = laptop.get("/api/account/sessions").await.assert_status(StatusCode::OK).json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1, "{list:?}");
    for s in list {
        for key in ["id", "methods", "created_at", "last_seen_at", "expires_at"] {
            assert!(s[key].as_str().is_some_and(|v| !v.is_empty()), "{key} in {s}");
        }
        assert_eq!(s["client_ip"], "127.0.0.1", "{s}");
    }
    let current = list.iter().find(|s| s["current"] == true).unwrap()["id"].as_str().unwrap().to_owned();
    let phone_id = phone
        .get("/api/account/sessions")
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(phone_id, current);

    // The admin sees the same sessions, none of them the admin's own.
    let seen = app.get(&format!("/api/users/{}/sessions", alice.id)).await.assert_status(StatusCode::OK).json();
    assert_eq!(seen.as_array().unwrap().len(), 3, "{seen}");
    assert!(seen.as_array().unwrap().iter().all(|s| s["current"] == false), "{seen}");

    laptop.delete(&format!("/api/account/sessions/{phone_id}")).await.assert_status(StatusCode::NO_CONTENT);
    phone.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    laptop.delete(&format!("/api/account/sessions/{phone_id}")).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    laptop.delete("/api/account/sessions/not-an-id").await.assert_error(StatusCode::NOT_FOUND, "not_found");
    // Another user's session id is not the caller's to end.
    let admin_session = app.get("/api/account/sessions").await.json()[0]["id"].as_str().unwrap().to_owned();
    laptop
        .delete(&format!("/api/account/sessions/{admin_session}"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.me().await.assert_status(StatusCode::OK);

    laptop.post_json("/api/account/sessions/end-others", &json!({})).await.assert_status(StatusCode::NO_CONTENT);
    tablet.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    laptop.me().await.assert_status(StatusCode::OK);
    let list = laptop.get("/api/account/sessions").await.json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], current.as_str());

    // Ending one's current session signs this browser out.
    laptop.delete(&format!("/api/account/sessions/{current}")).await.assert_status(StatusCode::NO_CONTENT);
    laptop.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
}
