//! `/metrics` on its own listener: the counters of the sign-in machine, the lockout,
//! code sends and rate limits move when those things happen; latency is recorded by
//! route template; gauges for the pool, the argon2 queue, the process's own figures;
//! cache reads. The public listener never serves it.
//!
//! The recorder is process-wide, and other tests run in parallel in this process, so
//! counters are compared before and after, never against exact values.

use std::net::SocketAddr;

use reqwest::StatusCode;

use crate::flows::{
    assert_factor_error, create_user, enrol_authenticator, forced_tenant, password_step, send_code, verify, wrong_totp,
};
use crate::helpers::{Limits, Options, PASSWORD, TestApp};

async fn scrape(addr: SocketAddr) -> String {
    let resp = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    resp.text().await.unwrap()
}

/// The sum of the samples of `name` whose labels include every pair of `labels`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            if metric == name && labels.iter().all(|(k, val)| rest.contains(&format!("{k}=\"{val}\""))) {
                v.parse::<f64>().ok()
            } else {
                None
            }
        })
        .sum()
}

#[tokio::test]
async fn metrics_count_what_happens_and_only_on_their_own_listener() {
    let options = Options {
        dev_senders: true,
        manual_clock: true,
        lockout_max_failures: Some(2),
        limits: Limits { sign_in_per_account: Some(2), ..Limits::default() },
        ..Options::default()
    };
    let app =
        TestApp::spawn_configured(options, |c| c.metrics_bind = Some(SocketAddr::from(([127, 0, 0, 1], 0)))).await;
    app.sign_in_admin().await;
    let metrics = app.running.metrics_addr.expect("metrics_bind is set, so metrics are served");
    let before = scrape(metrics).await;

    app.new_client().sign_in_admin().await;
    // The public listener does not serve them.
    app.get("/metrics").await.assert_error(StatusCode::NOT_FOUND, "not_found");

    let t = forced_tenant(&app, "acme").await;
    let alice = create_user(&app, &t.id, "alice", None).await;
    let enrolled = enrol_authenticator(&app, &app.new_client(), "acme", "alice").await;
    let c = app.new_client();
    c.sign_in(Some("acme"), "alice", "not alice's password")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    // The per-account limit (2 a minute) is used up by now: enrolment and the wrong password.
    let limited = c.sign_in(Some("acme"), "alice", PASSWORD).await;
    assert_factor_error(&limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    app.advance_minutes(1);
    password_step(&c, "acme", "alice", "requires_two_factor").await;
    let first = verify(&c, "authenticator", &wrong_totp(&app, &enrolled.secret), false).await;
    assert_factor_error(&first, StatusCode::UNAUTHORIZED, "invalid_code");
    let second = verify(&c, "authenticator", &wrong_totp(&app, &enrolled.secret), false).await;
    assert_factor_error(&second, StatusCode::LOCKED, "locked_out");

    // An emailed code (the development sender takes it).
    let bob = create_user(&app, &t.id, "bob", Some("bob@example.test")).await;
    app.give_factor(&bob.id).await;
    let b = app.new_client();
    password_step(&b, "acme", "bob", "requires_two_factor").await;
    send_code(&b, "email").await.assert_status(StatusCode::OK);

    // A path with an id.
    app.get(&format!("/api/users/{}", alice.id)).await.assert_status(StatusCode::OK);

    let after = scrape(metrics).await;
    let moved = |name: &str, labels: &[(&str, &str)], by: f64| {
        let (was, is) = (value(&before, name, labels), value(&after, name, labels));
        assert!(is - was >= by, "{name}{labels:?} went from {was} to {is}, expected +{by}:\n{after}");
    };
    moved("twofold_sign_ins_total", &[("factor", "password"), ("outcome", "signed_in")], 1.0);
    moved("twofold_sign_ins_total", &[("factor", "password"), ("outcome", "invalid_credentials")], 1.0);
    moved("twofold_sign_ins_total", &[("factor", "password"), ("outcome", "rate_limited")], 1.0);
    moved("twofold_sign_ins_total", &[("factor", "password"), ("outcome", "second_factor_required")], 2.0);
    moved("twofold_sign_ins_total", &[("factor", "password"), ("outcome", "enrollment_required")], 1.0);
    moved("twofold_sign_ins_total", &[("factor", "enroll_authenticator"), ("outcome", "signed_in")], 1.0);
    moved("twofold_sign_ins_total", &[("factor", "authenticator"), ("outcome", "invalid_code")], 1.0);
    moved("twofold_sign_ins_total", &[("factor", "authenticator"), ("outcome", "locked_out")], 1.0);
    moved("twofold_second_factor_failures_total", &[("factor", "authenticator")], 2.0);
    moved("twofold_lockouts_total", &[("kind", "timed")], 1.0);
    moved("twofold_code_sends_total", &[("channel", "email"), ("result", "sent")], 1.0);
    moved("twofold_rate_limited_total", &[("class", "sign_in")], 1.0);
    moved("twofold_cache_requests_total", &[("cache", "settings")], 1.0);
    moved("twofold_cache_requests_total", &[("cache", "sessions"), ("result", "miss")], 1.0);
    moved("twofold_cache_requests_total", &[("cache", "subjects")], 1.0);
    moved(
        "twofold_http_request_duration_seconds_count",
        &[("route", "/api/auth/sign-in"), ("method", "POST"), ("status", "200")],
        3.0,
    );
    moved("twofold_http_request_duration_seconds_count", &[("route", "/api/users/{user_id}"), ("method", "GET")], 1.0);
    assert!(after.contains("twofold_http_request_duration_seconds_bucket{"), "latency is a histogram:\n{after}");
    // Route templates, never raw paths with ids.
    assert!(!after.contains(&alice.id), "a raw id in the metrics:\n{after}");
    for gauge in ["twofold_db_pool_connections", "twofold_db_pool_max_connections", "twofold_argon2_queue_depth"] {
        assert!(after.lines().any(|l| l.starts_with(gauge)), "{gauge} missing:\n{after}");
    }
    assert_eq!(value(&after, "twofold_db_pool_max_connections", &[]), 4.0);
    if crate::helpers::Backend::from_env() == crate::helpers::Backend::Sqlite {
        // The finished sign-ins committed through the writer; a commit holds at least
        // one of the server's transactions.
        moved("twofold_sqlite_commit_transactions_count", &[], 2.0);
        let commits = value(&after, "twofold_sqlite_commit_transactions_count", &[]);
        let transactions = value(&after, "twofold_sqlite_commit_transactions_sum", &[]);
        assert!(transactions >= commits, "{transactions} transactions in {commits} commits:\n{after}");
        assert!(after.contains("twofold_sqlite_commit_transactions_bucket{le=\"1\"}"), "buckets:\n{after}");
        let alone = value(&after, "twofold_sqlite_commit_transactions_bucket", &[("le", "1")]);
        assert!(alone <= commits, "{alone} commits of one transaction in {commits}:\n{after}");
        assert!(!after.contains("twofold_db_hot_connections"), "a hot pool on SQLite:\n{after}");
        // The WAL's file, read at the scrape: the sign-ins wrote to it, and in a test
        // this short it only grows (it is cut back past 512 MiB).
        let wal = value(&after, "twofold_sqlite_wal_bytes", &[]);
        let file = app.sqlite_wal_bytes() as f64;
        assert!(wal > 0.0 && wal <= file, "the WAL's size {wal} bytes, its file {file}:\n{after}");
    } else {
        assert!(!after.contains("twofold_sqlite_commit_transactions"), "SQLite commits on PostgreSQL:\n{after}");
        assert!(!after.contains("twofold_sqlite_wal_bytes"), "a SQLite WAL on PostgreSQL:\n{after}");
        // The sessions and pending sign-ins above were read on the hot pool, which keeps
        // its connections for the next request.
        assert!(value(&after, "twofold_db_hot_connections", &[("state", "open")]) >= 1.0, "{after}");
        assert!(value(&after, "twofold_db_hot_connections", &[("state", "idle")]) >= 1.0, "{after}");
    }
    assert!(value(&after, "twofold_db_pool_connections", &[("state", "open")]) >= 1.0, "{after}");

    // The process's own figures. The server runs in this test's process, so its resident
    // memory is the one the kernel reports here (a figure in kB or pages would be off by
    // a factor of a thousand or four thousand; the tests running beside it move it a
    // little between the two readings).
    let resident = value(&after, "process_resident_memory_bytes", &[]);
    let kernel = resident_bytes_of_this_process();
    assert!(resident > kernel / 2.0 && resident < kernel * 2.0, "{resident} bytes against the kernel's {kernel}");
    // Processor time counts whole seconds (the facade's counters are integers), which a
    // test this short may not have used.
    assert!(after.contains("# TYPE process_cpu_seconds_total counter"), "{after}");
    // The runtime's workers at least, and the listeners' sockets among the open files.
    assert!(value(&after, "process_threads", &[]) >= 2.0, "{after}");
    assert!(value(&after, "process_open_fds", &[]) >= 3.0, "{after}");
    assert!(after.contains("# TYPE process_resident_memory_bytes gauge"), "{after}");
}

/// `VmRSS` of `/proc/self/status`, in bytes.
fn resident_bytes_of_this_process() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap();
    kb * 1024.0
}
