//! Probes and the OpenAPI document: what load balancers and API clients rely on before
//! they ever sign in.

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE};

use crate::helpers::{Options, TestApp};

#[tokio::test]
async fn health_answers_ok() {
    let app = TestApp::spawn().await;
    let body = app.get("/health").await.assert_status(StatusCode::OK).json();
    assert_eq!(body, serde_json::json!({ "status": "ok" }));
}

#[tokio::test]
async fn ready_answers_when_the_database_does() {
    let app = TestApp::spawn().await;
    let body = app.get("/ready").await.assert_status(StatusCode::OK).json();
    assert_eq!(body, serde_json::json!({ "status": "ready" }));
}

#[tokio::test]
async fn ready_reports_unavailable_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    // Closing the pool is the in-process way to lose the database.
    app.running.state.db().pool.close().await;
    let resp = app.get("/ready").await;
    resp.assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    // Liveness must not depend on the database, or an outage restarts healthy nodes.
    app.get("/health").await.assert_status(StatusCode::OK);
}

#[tokio::test]
async fn openapi_document_lists_the_api() {
    let app = TestApp::spawn().await;
    let resp = app.get("/api/openapi.json").await.assert_status(StatusCode::OK);
    let ct = resp.headers[CONTENT_TYPE].to_str().unwrap();
    assert!(ct.starts_with("application/json"), "{ct}");
    let doc = resp.json();
    let version = doc["openapi"].as_str().expect("an openapi version");
    assert!(version.starts_with("3."), "{version}");
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/api/host/settings",
        "/api/tenants/{tenant_id}/feature",
        "/api/audit",
        "/api/auth/sign-in",
        "/api/users/{user_id}/policy",
    ] {
        assert!(paths.contains_key(path), "{path} missing from {:?}", paths.keys());
    }
}

/// A parameter documented in the wrong place makes generated clients send it where the
/// server never looks.
#[tokio::test]
async fn openapi_parameters_are_documented_where_they_are_read() {
    let app = TestApp::spawn().await;
    let doc = app.get("/api/openapi.json").await.assert_status(StatusCode::OK).json();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().expect("a parameter name");
                let in_template = path.contains(&format!("{{{name}}}"));
                assert_eq!(
                    p["in"] == "path",
                    in_template,
                    "{method} {path}: parameter {name} is documented in {}",
                    p["in"]
                );
            }
        }
    }
    let list = &doc["paths"]["/api/tenants"]["get"]["parameters"];
    assert!(list.as_array().expect("parameters").iter().any(|p| p["name"] == "q" && p["in"] == "query"), "{list}");
    let audit = &doc["paths"]["/api/audit"]["get"]["parameters"];
    assert!(
        audit.as_array().expect("parameters").iter().any(|p| p["name"] == "tenant_id" && p["in"] == "query"),
        "{audit}"
    );
}

#[tokio::test]
async fn responses_carry_the_security_headers() {
    let app = TestApp::spawn().await;
    let resp = app.get("/api/auth/me").await;
    assert_eq!(resp.headers["x-content-type-options"], "nosniff");
    assert_eq!(resp.headers["x-frame-options"], "DENY");
    assert_eq!(resp.headers["referrer-policy"], "no-referrer");
    // Answers carry session-bound data; no shared cache may keep them.
    assert_eq!(resp.headers[CACHE_CONTROL], "no-store");
}

/// The statuses the document lists for one operation.
fn documented(doc: &serde_json::Value, method: &str, path: &str) -> Vec<String> {
    let responses = doc["paths"][path][method]["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path} is not in the document"));
    responses.keys().cloned().collect()
}

/// Every documented operation with its path ids replaced by an id that names nothing.
fn operations(doc: &serde_json::Value) -> Vec<(reqwest::Method, String, String)> {
    let any_id = uuid::Uuid::now_v7().to_string();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            let concrete = path
                .replace("{tenant_id}", &any_id)
                .replace("{user_id}", &any_id)
                .replace("{browser_id}", &any_id)
                .replace("{group_id}", &any_id)
                .replace("{application_id}", &any_id)
                .replace("{grant_id}", &any_id)
                .replace("{handle}", "no-such-request")
                .replace("{session_id}", &any_id)
                .replace("{passkey_id}", &any_id);
            assert!(!concrete.contains('{'), "a path parameter this test does not know: {path}");
            ops.push((method.to_uppercase().parse().expect("an HTTP method"), path.clone(), concrete));
        }
    }
    assert!(ops.len() > 50, "only {} operations", ops.len());
    ops
}

#[tokio::test]
async fn every_refusal_without_credentials_is_documented() {
    // The refusals that come from the middleware and the extractors rather than from
    // the handlers (no session, no anti-CSRF header, a body that is not JSON) are the
    // ones a route's own annotation forgets; each must be in the document.
    let app = TestApp::spawn().await;
    let doc = app.get("/api/openapi.json").await.assert_status(StatusCode::OK).json();
    for (method, path, concrete) in operations(&doc) {
        let statuses = documented(&doc, &method.as_str().to_lowercase(), &path);
        let mut answers = vec![app.send(app.raw(method.clone(), &concrete)).await];
        if method != reqwest::Method::GET {
            let with_header = app.raw(method.clone(), &concrete).header("X-Requested-With", "test");
            answers.push(app.send(with_header).await);
            let not_json = app.raw(method.clone(), &concrete).header("X-Requested-With", "test").body("{}");
            answers.push(app.send(not_json).await);
        }
        for resp in answers {
            let status = resp.status.as_str().to_owned();
            assert!(
                statuses.contains(&status),
                "{method} {path} answered {status}, documented {statuses:?}: {}",
                resp.text()
            );
        }
    }
}

#[tokio::test]
async fn the_document_names_the_session_cookie_in_use() {
    for (secure, cookie) in [(false, "twofold_session"), (true, "__Host-twofold_session")] {
        let app = TestApp::spawn_with(Options { cookie_secure: secure, ..Options::default() }).await;
        let doc = app.get("/api/openapi.json").await.assert_status(StatusCode::OK).json();
        let scheme = &doc["components"]["securitySchemes"]["session"];
        assert_eq!(
            (&scheme["type"], &scheme["in"], &scheme["name"]),
            (&"apiKey".into(), &"cookie".into(), &cookie.into())
        );
        // Signed-in operations inherit the document's requirement; sign-in and the probes
        // need nothing.
        assert_eq!(doc["security"], serde_json::json!([{ "session": [] }]));
        assert_eq!(doc["paths"]["/api/auth/me"]["get"].get("security"), None);
        assert_eq!(doc["paths"]["/api/auth/sign-in"]["post"]["security"], serde_json::json!([{}]));
        assert_eq!(doc["paths"]["/health"]["get"]["security"], serde_json::json!([{}]));
    }
}

#[tokio::test]
async fn account_answers_found_by_schemathesis_are_documented() {
    // Removing a factor the user does not have is a 404; a switch the policy does not
    // let users change is a 409. Both were missing from the document.
    let app = TestApp::spawn_as_admin().await;
    let doc = app.get("/api/openapi.json").await.json();
    app.delete("/api/account/authenticator").await.assert_error(StatusCode::NOT_FOUND, "not_found");
    assert!(documented(&doc, "delete", "/api/account/authenticator").contains(&"404".to_owned()));
    app.delete("/api/account/phone").await.assert_error(StatusCode::NOT_FOUND, "not_found");
    assert!(documented(&doc, "delete", "/api/account/phone").contains(&"404".to_owned()));

    let mut locked = crate::helpers::default_settings();
    locked["users_can_change"] = serde_json::json!(false);
    app.put_json("/api/host/settings", &locked).await.assert_status(StatusCode::OK);
    app.put_json("/api/account/two-factor", &serde_json::json!({ "enabled": true }))
        .await
        .assert_error(StatusCode::CONFLICT, "user_cannot_change");
    assert!(documented(&doc, "put", "/api/account/two-factor").contains(&"409".to_owned()));
}

#[tokio::test]
async fn waiting_answers_document_retry_after() {
    let app = TestApp::spawn().await;
    let doc = app.get("/api/openapi.json").await.json();
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            for status in ["423", "429", "503"] {
                if let Some(resp) = op["responses"].get(status) {
                    seen += 1;
                    assert_eq!(
                        resp["headers"]["Retry-After"]["schema"]["type"], "integer",
                        "{method} {path} {status} does not document Retry-After"
                    );
                }
            }
        }
    }
    assert!(seen > 50, "only {seen} waiting answers");
}
