//! Housekeeping: rows past their expiry vanish, live ones stay, each statement deletes
//! a bounded batch, audit events go only when a retention is set, and on PostgreSQL the
//! advisory lock lets one run at a time. Time moves on the manual clock, the same one
//! every expiry check reads.

use reqwest::StatusCode;
use sqlx::{AnyPool, Connection};
use twofold_server::db::housekeeping::{self as store, Expiring};
use twofold_server::housekeeping::{Outcome, Report};

use crate::helpers::{Backend, Options, TestApp};

const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

async fn admin_id(pool: &AnyPool) -> String {
    sqlx::query_scalar("SELECT id FROM users WHERE username_key = 'admin'").fetch_one(pool).await.unwrap()
}

async fn count(pool: &AnyPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"))).fetch_one(pool).await.unwrap()
}

/// One row in each expiring table, expiring at `expires_at`.
async fn insert_expiring(pool: &AnyPool, user: &str, now: i64, expires_at: i64) {
    sqlx::query(
        "INSERT INTO one_time_codes (id, user_id, purpose, binding, destination, code_hash, created_at, expires_at) \
         VALUES ($1, $2, 'sign_in_email', 'b', 'a@example.com', 'h', $3, $4)",
    )
    .bind(id())
    .bind(user)
    .bind(now)
    .bind(expires_at)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sign_in_attempts (token_hash, id, user_id, stage, security_stamp, created_at, expires_at) \
         VALUES ($1, $2, $3, 'second_factor', 's', $4, $5)",
    )
    .bind(id())
    .bind(id())
    .bind(user)
    .bind(now)
    .bind(expires_at)
    .execute(pool)
    .await
    .unwrap();
    insert_session(pool, user, now, expires_at).await;
    sqlx::query(
        "INSERT INTO remembered_browsers (id, token_hash, user_id, security_stamp, created_at, last_used_at, expires_at) \
         VALUES ($1, $2, $3, 's', $4, $4, $5)",
    )
    .bind(id())
    .bind(id())
    .bind(user)
    .bind(now)
    .bind(expires_at)
    .execute(pool)
    .await
    .unwrap();
}

async fn insert_session(pool: &AnyPool, user: &str, now: i64, expires_at: i64) {
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, security_stamp, auth_methods, created_at, last_seen_at, expires_at) \
         VALUES ($1, $2, 's', 'pwd', $3, $3, $4)",
    )
    .bind(id())
    .bind(user)
    .bind(now)
    .bind(expires_at)
    .execute(pool)
    .await
    .unwrap();
}

fn ran(outcome: Outcome) -> Report {
    match outcome {
        Outcome::Ran(report) => report,
        Outcome::Skipped => panic!("housekeeping was skipped with no other run holding the lock"),
    }
}

#[tokio::test]
async fn expired_rows_vanish_and_live_ones_stay() {
    let app = TestApp::spawn_with(Options { manual_clock: true, ..Options::default() }).await;
    // A real session, made by signing in, must survive.
    app.sign_in_admin().await;
    let pool = &app.running.state.db().pool;
    let user = admin_id(pool).await;
    let now = app.running.state.now();
    for _ in 0..2 {
        insert_expiring(pool, &user, now, now + MINUTE).await;
    }
    insert_expiring(pool, &user, now, now + 60 * MINUTE).await;

    // Nothing has expired yet.
    let report = ran(app.running.state.housekeep().await.unwrap());
    assert_eq!(report.total(), 0, "{report:?}");

    app.advance_minutes(2);
    let report = ran(app.running.state.housekeep().await.unwrap());
    assert_eq!(
        report,
        Report {
            one_time_codes: 2,
            sign_in_attempts: 2,
            sessions: 2,
            remembered_browsers: 2,
            audit_events: 0,
            oidc: 0,
            batches: report.batches
        }
    );
    for table in ["one_time_codes", "sign_in_attempts", "remembered_browsers"] {
        assert_eq!(count(pool, table).await, 1, "{table}");
    }
    // The row that lives an hour, and the admin's real session.
    assert_eq!(count(pool, "sessions").await, 2);
    app.me().await.assert_status(StatusCode::OK);

    // Audit events are kept when no retention is set, however old.
    app.advance_minutes(10 * 365 * 24 * 60);
    let report = ran(app.running.state.housekeep().await.unwrap());
    assert_eq!(report.audit_events, 0);
    assert!(count(pool, "audit_events").await > 0);
    assert_eq!(count(pool, "sessions").await, 0, "every session has expired ten years on");
}

#[tokio::test]
async fn each_statement_deletes_at_most_one_batch() {
    let app = TestApp::spawn_configured(Options { manual_clock: true, ..Options::default() }, |c| {
        c.housekeeping_batch_size = 3;
    })
    .await;
    let pool = &app.running.state.db().pool;
    let user = admin_id(pool).await;
    let now = app.running.state.now();
    for _ in 0..7 {
        insert_session(pool, &user, now, now - 1).await;
    }
    insert_session(pool, &user, now, now + MINUTE).await;

    assert_eq!(store::purge_batch(pool, Expiring::Sessions, now, 3).await.unwrap(), 3);
    assert_eq!(count(pool, "sessions").await, 5);

    let report = ran(app.running.state.housekeep().await.unwrap());
    assert_eq!(report.sessions, 4);
    // Sessions took two statements (3, then 1); the eight empty tables (WebAuthn
    // ceremonies among them) one each.
    assert_eq!(report.batches, 10, "{report:?}");
    assert_eq!(count(pool, "sessions").await, 1, "the live session stays");
}

#[tokio::test]
async fn audit_retention_deletes_only_older_events() {
    let app = TestApp::spawn_configured(Options { manual_clock: true, ..Options::default() }, |c| {
        c.audit_retention_days = Some(30);
        c.housekeeping_batch_size = 2;
    })
    .await;
    let db = app.running.state.db();
    let pool = &db.pool;
    let now = app.running.state.now();
    let before = count(pool, "audit_events").await;
    // Events as the server writes them, around the cut-off to the millisecond: the
    // retention goes by the events' time (the clock's, of 2025), not by their ids'.
    let event = |at| twofold_server::db::NewAudit {
        at,
        actor_user_id: None,
        scope_key: "host",
        action: "test.event",
        target: "x",
        before: None,
        after: None,
    };
    for at in [now - 31 * DAY, now - 31 * DAY, now - 30 * DAY - 1, now - 30 * DAY - 1, now - 30 * DAY] {
        db.insert_audit_alone(&event(at)).await.unwrap();
    }
    db.insert_audit_alone(&event(now - 30 * DAY + 1)).await.unwrap();
    db.insert_audit_alone(&event(now - 29 * DAY)).await.unwrap();

    let report = ran(app.running.state.housekeep().await.unwrap());
    assert_eq!(report.audit_events, 5, "{report:?}");
    assert_eq!(count(pool, "audit_events").await, before + 2);
}

#[test]
fn a_zero_retention_or_batch_is_refused() {
    let mut c = twofold_server::config::Config { audit_retention_days: Some(0), ..Default::default() };
    assert!(format!("{:#}", c.validate().unwrap_err()).contains("audit_retention_days"));
    c.audit_retention_days = None;
    c.housekeeping_batch_size = 0;
    assert!(format!("{:#}", c.validate().unwrap_err()).contains("housekeeping_batch_size"));
}

/// Two pools stand for two nodes: while one holds the lock the other cannot take it,
/// and a node's housekeeping run steps aside.
#[tokio::test]
async fn on_postgres_one_node_at_a_time_holds_the_lock() {
    if Backend::from_env() != Backend::Postgres {
        return;
    }
    let app = TestApp::spawn_with(Options { manual_clock: true, ..Options::default() }).await;
    let url = app.running.state.config().database_url.clone();
    let node_a = AnyPool::connect(&url).await.unwrap();
    let node_b = AnyPool::connect(&url).await.unwrap();
    let mut a = node_a.acquire().await.unwrap().detach();
    let mut b = node_b.acquire().await.unwrap().detach();

    assert!(store::try_advisory_lock(&mut a).await.unwrap(), "a free lock is taken");
    assert!(!store::try_advisory_lock(&mut b).await.unwrap(), "a held lock is refused");

    let pool = &app.running.state.db().pool;
    let user = admin_id(pool).await;
    let now = app.running.state.now();
    insert_session(pool, &user, now, now - 1).await;
    assert_eq!(app.running.state.housekeep().await.unwrap(), Outcome::Skipped);
    assert_eq!(count(pool, "sessions").await, 1, "a skipped run deletes nothing");

    assert!(store::advisory_unlock(&mut a).await.unwrap());
    assert!(store::try_advisory_lock(&mut b).await.unwrap(), "released, the other node gets it");
    assert!(store::advisory_unlock(&mut b).await.unwrap());

    let report = ran(app.running.state.housekeep().await.unwrap());
    assert_eq!(report.sessions, 1);
    // The run gave the lock back.
    assert!(store::try_advisory_lock(&mut a).await.unwrap());
    a.close().await.unwrap();
    // Closing a session releases its lock too, once the server has ended that backend,
    // which happens after the client has hung up: wait for it, within a bound.
    let mut taken = false;
    for _ in 0..100 {
        if store::try_advisory_lock(&mut b).await.unwrap() {
            taken = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(taken, "the lock of a closed session was never released");
    b.close().await.unwrap();
}
