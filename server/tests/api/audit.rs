//! The audit trail: newest first, before and after of each change, filtering by scope,
//! cursor paging that neither skips nor repeats, and who may read which part.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, default_settings, settings_with};

fn ids(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["id"].as_str().expect("id").to_owned()).collect()
}

fn actions(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["action"].as_str().expect("action")).collect()
}

#[tokio::test]
async fn audit_lists_changes_newest_first_with_before_and_after() {
    let app = TestApp::spawn_as_admin().await;
    let me = app.me().await.json();
    let t = app.create_tenant("acme").await;
    let new = settings_with(json!({ "behaviour": "forced", "remember_browser_days": 3 }));
    app.put_host_settings(&new).await;
    app.set_feature(&t.id, "disabled").await;
    let u = app.create_tenant_user(&t.id, "tina", PASSWORD).await;

    let events = app.audit("").await;
    // Newest first: the ids are time-ordered (UUIDv7), so they descend strictly.
    let list = ids(&events);
    let mut sorted = list.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(list, sorted, "not newest first or not unique");
    assert_eq!(events[0]["action"], "user.created");
    assert_eq!(events[0]["target"], format!("user:{}", u.id));
    assert_eq!(events[0]["tenant_id"], t.id.as_str());
    assert_eq!(events[0]["actor_user_id"], me["id"]);
    let at = events[0]["at"].as_str().expect("at");
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).expect("at is RFC 3339");

    // The changes appear in the order they were made.
    let order: Vec<&str> = actions(&events)
        .into_iter()
        .filter(|a| ["tenant.created", "host_settings.updated", "tenant_feature.updated", "user.created"].contains(a))
        .collect();
    assert_eq!(
        order,
        [
            "user.created",
            "tenant_feature.updated",
            "host_settings.updated",
            "tenant.created",
            // The bootstrap admin.
            "user.created",
        ]
    );

    let settings_change = events.iter().find(|e| e["action"] == "host_settings.updated").expect("the settings change");
    assert_eq!(settings_change["before"], default_settings());
    assert_eq!(settings_change["after"], new);
    assert_eq!(settings_change["tenant_id"], Value::Null);
    let feature_change = events.iter().find(|e| e["action"] == "tenant_feature.updated").expect("the feature change");
    assert_eq!(feature_change["before"], json!({ "behaviour": "optional" }));
    assert_eq!(feature_change["after"], json!({ "behaviour": "disabled" }));
}

#[tokio::test]
async fn audit_filters_by_scope() {
    let app = TestApp::spawn_as_admin().await;
    let a = app.create_tenant("acme").await;
    let b = app.create_tenant("globex").await;
    app.set_feature(&a.id, "forced").await;
    app.create_tenant_user(&b.id, "bob", PASSWORD).await;
    app.put_host_settings(&settings_with(json!({ "remember_browser_days": 9 }))).await;

    let of_a = app.audit(&format!("&tenant_id={}", a.id)).await;
    assert!(of_a.iter().all(|e| e["tenant_id"] == a.id.as_str()), "{of_a:?}");
    assert_eq!(actions(&of_a), ["tenant_feature.updated", "tenant.created"]);
    let of_b = app.audit(&format!("&tenant_id={}", b.id)).await;
    assert_eq!(actions(&of_b), ["user.created", "tenant.created"]);
    let of_host = app.audit("&tenant_id=host").await;
    assert!(of_host.iter().all(|e| e["tenant_id"].is_null()), "{of_host:?}");
    assert!(actions(&of_host).contains(&"host_settings.updated"));

    // Together the three scopes are the whole trail.
    let all = app.audit("").await;
    assert_eq!(all.len(), of_a.len() + of_b.len() + of_host.len());
}

#[tokio::test]
async fn audit_pages_walk_every_event_exactly_once() {
    let app = TestApp::spawn_as_admin().await;
    for name in ["t-one", "t-two", "t-three", "t-four"] {
        app.create_tenant(name).await;
    }
    app.put_host_settings(&settings_with(json!({ "enrollment_grace_days": 2 }))).await;
    let everything = ids(&app.audit("").await);
    assert!(everything.len() >= 7, "{everything:?}");

    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => "/api/audit?limit=2".to_owned(),
            Some(c) => format!("/api/audit?limit=2&before={c}"),
        };
        let page = app.get(&path).await.assert_status(StatusCode::OK).json();
        let items = page["items"].as_array().expect("items");
        assert!(!items.is_empty() && items.len() <= 2, "{page}");
        walked.extend(ids(items));
        pages += 1;
        assert!(pages <= everything.len(), "paging does not end");
        match page["next_before"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let unique: BTreeSet<_> = walked.iter().collect();
    assert_eq!(unique.len(), walked.len(), "an event came twice");
    assert_eq!(walked, everything);
}

#[tokio::test]
async fn tenant_admins_read_only_their_tenants_trail() {
    let app = TestApp::spawn_as_admin().await;
    let (a, _, ta) = app.tenant_with_admin("acme", "ada").await;
    let b = app.create_tenant("globex").await;

    ta.get("/api/audit").await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    ta.get("/api/audit?tenant_id=host").await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    ta.get(&format!("/api/audit?tenant_id={}", b.id)).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let own = ta.audit(&format!("&tenant_id={}", a.id)).await;
    assert!(!own.is_empty());
    assert!(own.iter().all(|e| e["tenant_id"] == a.id.as_str()));
    assert!(actions(&own).contains(&"role.granted"), "{own:?}");
}

#[tokio::test]
async fn refused_changes_leave_no_trace() {
    let app = TestApp::spawn_as_admin().await;
    let t = app.create_tenant("acme").await;
    app.set_feature(&t.id, "forced").await;
    let before = app.audit("").await;

    app.put_json(&format!("/api/tenants/{}/settings", t.id), &settings_with(json!({ "behaviour": "disabled" })))
        .await
        .assert_error(StatusCode::CONFLICT, "behaviour_fixed_by_host");
    app.put_json("/api/host/settings", &settings_with(json!({ "remember_browser_days": 0 })))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_field");
    app.post_json("/api/tenants", &json!({ "name": "acme" })).await.assert_error(StatusCode::CONFLICT, "name_taken");

    assert_eq!(app.audit("").await, before);
}

#[tokio::test]
async fn bad_audit_queries_are_refused() {
    let app = TestApp::spawn_as_admin().await;
    app.get("/api/audit?before=yesterday").await.assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    app.get("/api/audit?limit=ten").await.assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    app.get("/api/audit?tenant=host").await.assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    let unknown = uuid::Uuid::now_v7();
    app.get(&format!("/api/audit?tenant_id={unknown}")).await.assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn the_trail_is_filtered_by_type_actor_user_time_and_address_and_names_who_and_what() {
    let app = TestApp::spawn_as_admin().await;
    let host_admin = app.me().await.json()["id"].as_str().unwrap().to_owned();
    let (t, boss, tadmin) = app.tenant_with_admin("acme", "boss").await;
    let tina = app.create_tenant_user(&t.id, "tina", PASSWORD).await;
    tadmin
        .post_json(&format!("/api/users/{}/deactivate", tina.id), &json!({}))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    tadmin
        .post_json(&format!("/api/users/{}/reactivate", tina.id), &json!({}))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    // Written outside any transaction, on the writer: it still records the address.
    app.new_client()
        .sign_in(Some("acme"), "tina", "not tina's password")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");

    let family = app.audit("&action=user.").await;
    assert!(
        !family.is_empty() && family.iter().all(|e| e["action"].as_str().unwrap().starts_with("user.")),
        "{family:?}"
    );
    let exact = app.audit("&action=user.deactivated").await;
    assert_eq!(actions(&exact), ["user.deactivated"]);
    let by_boss = app.audit(&format!("&actor={}", boss.id)).await;
    assert_eq!(actions(&by_boss), ["user.reactivated", "user.deactivated", "sign_in.succeeded"]);
    // The sign-in's event is written in a transaction on the writer's thread; it still
    // records the address of the request that made it.
    assert!(by_boss.iter().all(|e| e["client_ip"] == "127.0.0.1"), "{by_boss:?}");
    let about_tina = app.audit(&format!("&user={}", tina.id)).await;
    assert_eq!(actions(&about_tina), ["sign_in.failed", "user.reactivated", "user.deactivated", "user.created"]);
    // Every event made through HTTP records the client address.
    assert!(about_tina.iter().all(|e| e["client_ip"] == "127.0.0.1"), "{about_tina:?}");
    assert_eq!(app.audit(&format!("&user={}&client_ip=127.0.0.1", tina.id)).await.len(), 4);
    assert!(app.audit(&format!("&user={}&client_ip=10.9.8.7", tina.id)).await.is_empty());
    let now = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();
    let later = fmt(now + time::Duration::minutes(5));
    let earlier = fmt(now - time::Duration::minutes(5));
    assert!(app.audit(&format!("&user={}&from={later}", tina.id)).await.is_empty());
    assert_eq!(app.audit(&format!("&user={}&from={earlier}&to={later}", tina.id)).await.len(), 4);

    // Names: the host admin sees all of them.
    let e = &by_boss[0];
    assert_eq!((e["actor_name"].as_str(), e["target_name"].as_str()), (Some("boss"), Some("tina")), "{e}");
    assert_eq!(e["tenant_name"], "acme", "{e}");
    // A tenant admin sees their own users' names, never a host admin's.
    let seen = tadmin.audit(&format!("&tenant_id={}&user={}", t.id, tina.id)).await;
    let created = seen.iter().find(|e| e["action"] == "user.created").unwrap();
    assert_eq!(created["actor_user_id"], host_admin.as_str());
    assert!(created.get("actor_name").is_none(), "{created}");
    assert_eq!(created["target_name"], "tina", "{created}");

    for (query, field) in [
        ("&action=USER%20CREATED", "action"),
        ("&actor=nobody", "actor"),
        ("&user=42", "user"),
        ("&from=yesterday", "from"),
        ("&client_ip=not-an-address", "client_ip"),
    ] {
        let resp = app.get(&format!("/api/audit?limit=5{query}")).await;
        let body = resp.assert_error(StatusCode::BAD_REQUEST, "invalid_query");
        assert_eq!(body["field"], field, "{query}: {body}");
    }
}

#[tokio::test]
async fn the_trail_exports_as_csv_and_json_lines_with_formulas_defused() {
    let app = TestApp::spawn_as_admin().await;
    let t = app.create_tenant("acme").await;
    let odd = app.create_tenant_user(&t.id, "=cmd|calc", PASSWORD).await;
    let resp = app.get(&format!("/api/audit/export?format=csv&user={}", odd.id)).await.assert_status(StatusCode::OK);
    assert_eq!(resp.headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(resp.headers["content-disposition"], "attachment; filename=\"twofold-audit.csv\"");
    let text = resp.text();
    let mut lines = text.split("\r\n");
    assert_eq!(
        lines.next(),
        Some("id,at,tenant_id,tenant_name,actor_user_id,actor_name,action,target,target_name,client_ip,before,after")
    );
    let row = lines.next().unwrap();
    assert!(row.contains(",user.created,") && row.contains(",'=cmd|calc,"), "{row}");
    assert!(row.contains(&format!("user:{}", odd.id)), "{row}");

    let resp = app.get("/api/audit/export?format=jsonl&action=user.").await.assert_status(StatusCode::OK);
    assert_eq!(resp.headers["content-type"], "application/x-ndjson");
    let events: Vec<Value> = resp.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), app.audit("&action=user.").await.len());
    assert!(events.iter().all(|e| e["action"].as_str().unwrap().starts_with("user.")));

    app.get("/api/audit/export?format=xml").await.assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    // A tenant admin exports only their tenant.
    let (other, _, tadmin) = app.tenant_with_admin("other", "boss").await;
    tadmin.get("/api/audit/export?format=csv").await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    tadmin
        .get(&format!("/api/audit/export?format=csv&tenant_id={}", t.id))
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    tadmin.get(&format!("/api/audit/export?format=jsonl&tenant_id={}", other.id)).await.assert_status(StatusCode::OK);
}
