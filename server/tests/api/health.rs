//! Probes and the OpenAPI document: what load balancers and API clients rely on before
//! they ever sign in.

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE};

use crate::helpers::TestApp;

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
