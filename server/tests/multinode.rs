//! Two real `twofold` processes over one PostgreSQL database, talked to over HTTP: what
//! README "Running several nodes" promises, checked end to end.
//!
//! - a policy change made through node A is enforced by node B within a second, although
//!   both cache for an hour (`cache_ttl_seconds = 3600`): only the `pg_notify` notice can
//!   have refreshed B; so is a group's rule or membership, and such a change written in
//!   SQL behind both nodes' backs (the database's triggers send that notice);
//! - sessions, pending sign-ins, one-time codes, authenticator steps, the lockout count,
//!   remembered browsers and security stamps live in the database, so they hold across
//!   nodes, including under parallel redemption spread over both;
//! - a PostgreSQL restart under running nodes gives `503 unavailable` (never a 500 or a
//!   hang), `/ready` follows the database while `/health` does not, nothing is
//!   half-written, and both nodes and their change listeners recover by themselves;
//! - nodes on PostgreSQL's own host may reach it through its Unix socket alone.
//!
//! Each test starts its own throwaway cluster (initdb/pg_ctl as in scripts/pg-throwaway,
//! as the `postgres` user when run as root), an SMTP server where email codes are
//! needed, and two `twofold serve` children killed on drop. Missing PostgreSQL binaries,
//! `oathtool` or aiosmtpd fail the test rather than skip it: a skipped multi-node test
//! would report green for guarantees nobody checked. Configuration goes only into the
//! children's environment, never into this process's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::header::RETRY_AFTER;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Barrier;

#[path = "support/smtp.rs"]
mod smtp;
use smtp::{SmtpServer, header_value, mail_files, start_smtp_server};
#[path = "support/nodes.rs"]
mod nodes;
#[path = "support/soft_authenticator.rs"]
mod soft_authenticator;
use nodes::{ADMIN_PASSWORD, Cluster, Node, PASSWORD, Person, Resp, http, send, settings, totp};
use soft_authenticator::SoftAuthenticator;

/// The pool's acquire timeout (server/src/db/mod.rs): the longest a request may wait
/// for a database that is down before answering 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// What the acquire timeout may be exceeded by (scheduling, the HTTP round trip).
const SLACK: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------- SMTP (aiosmtpd)

/// The shared aiosmtpd server, and which of its messages the test has already read, so
/// each code is taken from a message of its own.
struct Mail {
    server: SmtpServer,
    read: Mutex<HashSet<PathBuf>>,
}

impl Mail {
    fn start() -> Mail {
        Mail { server: start_smtp_server(), read: Mutex::new(HashSet::new()) }
    }

    /// The code in the one new message to `to`, waiting up to 10 s for it to arrive.
    fn next_code(&self, to: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut read = self.read.lock().unwrap();
            let fresh: Vec<(PathBuf, String)> = mail_files(self.server.maildir.path())
                .into_iter()
                .filter(|(path, _)| !read.contains(path))
                .map(|(path, text)| (path, text.replace("\r\n", "\n")))
                // aiosmtpd records the envelope recipient, which is what routed the mail.
                .filter(|(_, text)| header_value(text, "X-RcptTo") == Some(to))
                // Security notices (a factor added, a lock) arrive in the background and
                // carry no code.
                .filter(|(_, text)| header_value(text, "Subject") != Some("Security notice from Twofold"))
                .collect();
            assert!(fresh.len() <= 1, "expected one new message to {to}, found {}", fresh.len());
            if let Some((path, message)) = fresh.into_iter().next() {
                read.insert(path);
                let at = message.find("code is ").unwrap_or_else(|| panic!("no code in the message: {message}"));
                let code: String = message[at + 8..].chars().take(6).collect();
                assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()), "{message}");
                return code;
            }
            drop(read);
            assert!(Instant::now() < deadline, "no message to {to} arrived within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Two nodes over one cluster. Fields drop in order: nodes first, the database last.
struct Deployment {
    a: Node,
    b: Node,
    mail: Option<Mail>,
    cluster: Cluster,
}

/// The relying party of the passkey test: `public_url` of both nodes.
const PASSKEY_ORIGIN: &str = "http://localhost:8443";

impl Deployment {
    fn start(with_smtp: bool) -> Deployment {
        Deployment::start_with(with_smtp, &[])
    }

    /// Two nodes with configuration added to the common one (for both).
    fn start_with(with_smtp: bool, extra: &[(&'static str, &str)]) -> Deployment {
        Deployment::start_on(Cluster::start(), with_smtp, extra)
    }

    /// Two nodes over `cluster`, reached at its [`Cluster::url`].
    fn start_on(cluster: Cluster, with_smtp: bool, extra: &[(&'static str, &str)]) -> Deployment {
        let mail = with_smtp.then(Mail::start);
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        let mut env = vec![
            ("TWOFOLD_DATABASE_URL", cluster.url()),
            // Every node must share the key: codes, secrets and remembered browsers made
            // on one node are checked on the other.
            ("TWOFOLD_SECRET_KEY", key),
            ("TWOFOLD_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
            ("TWOFOLD_COOKIE_SECURE", "false".to_owned()),
            ("TWOFOLD_BIND", "127.0.0.1:0".to_owned()),
            ("TWOFOLD_LOG_FORMAT", "json".to_owned()),
            ("TWOFOLD_LOG", "info".to_owned()),
            // An hour: a change seen on the other node within a second can only have
            // come from the change notice, never from the cache expiring.
            ("TWOFOLD_CACHE_TTL_SECONDS", "3600".to_owned()),
        ];
        if let Some(mail) = &mail {
            env.push(("TWOFOLD_SMTP_URL", mail.server.url()));
        }
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        // B starts only once A has migrated and created the first admin: two empty-
        // database starts at once would both try to create that admin.
        let mut a = Node::start("A", &env);
        let mut b = Node::start("B", &env);
        // Until its listener is up a node would miss notices; the tests below must not
        // race that start (the reconnect path is tested on its own).
        a.wait_for_log("change listener connected", 1, Duration::from_secs(30));
        b.wait_for_log("change listener connected", 1, Duration::from_secs(30));
        Deployment { a, b, mail, cluster }
    }

    fn mail(&self) -> &Mail {
        self.mail.as_ref().expect("started with SMTP")
    }

    fn assert_running(&mut self) {
        self.a.assert_running();
        self.b.assert_running();
    }
}

/// A six-digit code no step near now produces, so it is wrong whatever the clock does.
fn wrong_totp(secret: &str) -> String {
    let near: HashSet<String> = [0, 1, 2].iter().map(|s| totp(secret, *s)).collect();
    (0..).map(|n: u32| format!("{:06}", n * 7919 % 1_000_000)).find(|c| !near.contains(c)).unwrap()
}

/// Sends `per_node` copies of one verify request to each node at the same moment, all
/// with the same pending sign-in cookie. Returns every response.
async fn redeem_in_parallel(d: &Deployment, person: &Person, method: &str, code: &str, per_node: usize) -> Vec<Resp> {
    let cookies = person.cookies();
    let body = json!({ "method": method, "code": code });
    let barrier = Arc::new(Barrier::new(2 * per_node));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..2 * per_node {
        let base = if i % 2 == 0 { d.a.url() } else { d.b.url() }.to_owned();
        let (cookies, body, barrier, http) = (cookies.clone(), body.clone(), barrier.clone(), http());
        tasks.spawn(async move {
            barrier.wait().await;
            send(&http, &base, Method::POST, "/api/auth/sign-in/verify", Some(&body), &cookies).await
        });
    }
    tasks.join_all().await
}

#[track_caller]
fn assert_exactly_one_winner(responses: &[Resp], what: &str) {
    let winners = responses.iter().filter(|r| r.status == StatusCode::OK).count();
    let outcomes: Vec<String> = responses.iter().map(|r| format!("{} {}", r.status.as_u16(), r.outcome())).collect();
    eprintln!("{what}, redeemed on both nodes at once: {outcomes:?}");
    assert_eq!(winners, 1, "{what}: exactly one redemption may succeed; got {outcomes:?}");
    for r in responses.iter().filter(|r| r.status != StatusCode::OK) {
        // Losers either lost the race for the code (a wrong code for them, which counts
        // toward the lockout and may reach it) or arrived after the sign-in completed.
        assert!(
            ["invalid_code", "sign_in_expired", "locked_out"].contains(&r.outcome().as_str()),
            "{what}: unexpected loser answer {outcomes:?}"
        );
    }
}

// ---------------------------------------------------------------- timing

/// Polls `check` until it holds, which it must for a request sent within one second of
/// this call. Returns when the first request that saw it was sent.
async fn within_a_second(what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let sent = start.elapsed();
        if check().await {
            eprintln!("{what}: seen on node B after {} ms", sent.as_millis());
            return sent;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "{what}: node B still disagrees after 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------- tests

/// The tests sit in a module of their own so their names start with `multinode::`:
/// scripts/test runs them in its PostgreSQL phase and skips them by that prefix in the
/// workspace-wide SQLite run, which would otherwise run them a second time.
mod multinode {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn policy_changes_through_one_node_are_enforced_by_the_other_within_a_second() {
        let mut d = Deployment::start(false);
        let (a, b) = (d.a.url().to_owned(), d.b.url().to_owned());
        let admin = Person::new();
        admin.sign_in_admin(&a).await;

        // Host settings. hugo's sign-in on B reads, and caches for an hour, the host settings.
        admin.create_user(&a, None, "hugo").await;
        let hugo = Person::new();
        hugo.sign_in_as(&b, None, "hugo", "signed_in").await;
        admin.put(&a, "/api/host/settings", settings("forced", 14)).await.ok();
        within_a_second("host settings forced", async || {
            hugo.sign_in(&b, None, "hugo", PASSWORD).await.outcome() == "requires_enrollment"
        })
        .await;
        // And back, which also keeps the admin able to sign in without a second factor.
        admin.put(&a, "/api/host/settings", settings("optional", 14)).await.ok();
        within_a_second("host settings optional again", async || {
            hugo.sign_in(&b, None, "hugo", PASSWORD).await.outcome() == "signed_in"
        })
        .await;

        // A tenant's feature (the host's ceiling).
        let acme = admin.create_tenant(&a, "acme").await;
        admin.create_user(&a, Some(&acme), "alice").await;
        let alice = Person::new();
        alice.sign_in_as(&b, Some("acme"), "alice", "signed_in").await;
        admin.set_feature(&a, &acme, "forced").await;
        within_a_second("tenant feature forced", async || {
            alice.sign_in(&b, Some("acme"), "alice", PASSWORD).await.outcome() == "requires_enrollment"
        })
        .await;

        // A tenant's own settings, under an optional feature.
        let beta = admin.create_tenant(&a, "beta").await;
        admin.create_user(&a, Some(&beta), "bob").await;
        let bob = Person::new();
        bob.sign_in_as(&b, Some("beta"), "bob", "signed_in").await;
        admin.put(&a, &format!("/api/tenants/{beta}/settings"), settings("forced", 14)).await.ok();
        within_a_second("tenant settings forced", async || {
            bob.sign_in(&b, Some("beta"), "bob", PASSWORD).await.outcome() == "requires_enrollment"
        })
        .await;

        // A tenant-admin role, granted and revoked on A, decides what gil may do on B.
        let gamma = admin.create_tenant(&a, "gamma").await;
        let gil_id = admin.create_user(&a, Some(&gamma), "gil").await;
        let gil = Person::new();
        gil.sign_in_as(&b, Some("gamma"), "gil", "signed_in").await;
        let gamma_settings = format!("/api/tenants/{gamma}/settings");
        gil.get(&b, &gamma_settings).await.expect(StatusCode::FORBIDDEN);
        admin.post(&a, &format!("/api/tenants/{gamma}/admins"), json!({ "user_id": gil_id })).await.ok();
        within_a_second("tenant admin granted", async || gil.get(&b, &gamma_settings).await.status == StatusCode::OK)
            .await;
        admin.delete(&a, &format!("/api/tenants/{gamma}/admins/{gil_id}")).await.expect(StatusCode::NO_CONTENT);
        within_a_second("tenant admin revoked", async || {
            gil.get(&b, &gamma_settings).await.status == StatusCode::FORBIDDEN
        })
        .await;

        // A group's rule, a membership, and a change written behind the nodes' backs: each
        // reaches the policy B shows for erin, although B keeps her policy inputs for the
        // hour and never wrote them itself. The database's triggers announce every one.
        let epsilon = admin.create_tenant(&a, "epsilon").await;
        let erin = admin.create_user(&a, Some(&epsilon), "erin").await;
        let erin_policy = format!("/api/users/{erin}/policy");
        assert_eq!(admin.get(&b, &erin_policy).await.ok()["required"], false);
        let group = admin
            .post(
                &a,
                &format!("/api/tenants/{epsilon}/groups"),
                json!({ "name": "Finance", "rule": { "require_two_factor": true } }),
            )
            .await
            .expect(StatusCode::CREATED)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        admin.post(&a, &format!("/api/groups/{group}/members"), json!({ "user_id": erin })).await.ok();
        within_a_second("a membership of a requiring group", async || {
            let view = admin.get(&b, &erin_policy).await.ok();
            view["required"] == true && view["decided_by"] == "group"
        })
        .await;
        sqlx::any::install_default_drivers();
        let db = sqlx::AnyPool::connect(&d.cluster.url()).await.unwrap();
        sqlx::query("UPDATE user_groups SET require_two_factor = 0 WHERE id = $1")
            .bind(group.as_str())
            .execute(&db)
            .await
            .unwrap();
        within_a_second("a group's rule dropped in SQL", async || {
            admin.get(&b, &erin_policy).await.ok()["required"] == false
        })
        .await;
        db.close().await;

        // The control: B really does serve from its hour-long cache. The same kind of change
        // written behind the nodes' backs, without a notice, is not seen by B (which cached
        // the old feature) although A (which had not) sees it at once. So it was the notices
        // above that refreshed B.
        let delta = admin.create_tenant(&a, "delta").await;
        // Created through B: the new user's view resolves her policy, which caches the
        // feature on the node that answers, and A must not have it cached.
        admin.create_user(&b, Some(&delta), "dora").await;
        let dora = Person::new();
        dora.sign_in_as(&b, Some("delta"), "dora", "signed_in").await;
        let db = sqlx::AnyPool::connect(&d.cluster.url()).await.unwrap();
        sqlx::query("UPDATE tenants SET feature_behaviour = 'forced' WHERE id = $1")
            .bind(delta.as_str())
            .execute(&db)
            .await
            .unwrap();
        db.close().await;
        dora.sign_in_as(&a, Some("delta"), "dora", "requires_enrollment").await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        dora.sign_in_as(&b, Some("delta"), "dora", "signed_in").await;

        d.assert_running();
    }

    /// README "Configuration": on PostgreSQL's own host `database_url` may name the folder
    /// of its Unix socket, which spares every statement loopback TCP (BENCHMARKS.md). This
    /// cluster listens on no TCP address, so each node's pools, hot statements and change
    /// listener can only have used the socket.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn nodes_reach_postgresql_through_its_unix_socket() {
        let cluster = Cluster::start_socket_only();
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", cluster.port)).is_err(),
            "the cluster must listen on its socket only"
        );
        let mut d = Deployment::start_on(cluster, false, &[]);
        let (a, b) = (d.a.url().to_owned(), d.b.url().to_owned());
        let admin = Person::new();
        admin.sign_in_admin(&a).await;
        admin.create_user(&a, None, "sam").await;

        // A session made on B works on A; signed out on A, it ends on B.
        let sam = Person::new();
        sam.sign_in_as(&b, None, "sam", "signed_in").await;
        assert_eq!(sam.get(&a, "/api/auth/me").await.ok()["username"], "sam");
        let stale = sam.cookies();
        sam.get(&b, "/api/auth/me").await.ok();
        sam.post(&a, "/api/auth/sign-out", json!({})).await.expect(StatusCode::NO_CONTENT);
        within_a_second("a session signed out on A, on B", async || {
            send(&http(), &b, Method::GET, "/api/auth/me", None, &stale).await.status == StatusCode::UNAUTHORIZED
        })
        .await;

        // A policy change through A reaches B by the change listener's notice.
        admin.put(&a, "/api/host/settings", settings("forced", 14)).await.ok();
        within_a_second("host settings forced, on B", async || {
            sam.sign_in(&b, None, "sam", PASSWORD).await.outcome() == "requires_enrollment"
        })
        .await;

        d.assert_running();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sessions_remembered_browsers_and_security_stamps_hold_across_nodes() {
        let mut d = Deployment::start(false);
        let (a, b) = (d.a.url().to_owned(), d.b.url().to_owned());

        // A session made on A works on B, and signing out on B ends it on A.
        let admin = Person::new();
        admin.sign_in_admin(&a).await;
        let me_a = admin.get(&a, "/api/auth/me").await.ok();
        let me_b = admin.get(&b, "/api/auth/me").await.ok();
        assert_eq!(me_a["id"], me_b["id"]);
        assert_eq!(me_b["username"], "admin");
        let leaving = Person::new();
        leaving.sign_in_admin(&a).await;
        let stale = leaving.cookies();
        // A has just read the session (and keeps it for under a second): signing out on
        // B must still end it on A within that second.
        leaving.get(&a, "/api/auth/me").await.ok();
        leaving.post(&b, "/api/auth/sign-out", json!({})).await.expect(StatusCode::NO_CONTENT);
        within_a_second("a session signed out on B, on A", async || {
            send(&http(), &a, Method::GET, "/api/auth/me", None, &stale).await.status == StatusCode::UNAUTHORIZED
        })
        .await;
        send(&http(), &a, Method::GET, "/api/auth/me", None, &stale)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");

        // A remembered browser: made on A, honoured on B, revoked on A, then refused by B.
        let acme = admin.create_tenant(&a, "acme").await;
        admin.set_feature(&a, &acme, "forced").await;
        admin.create_user(&a, Some(&acme), "rita").await;
        let rita = Person::new();
        rita.sign_in_as(&a, Some("acme"), "rita", "requires_enrollment").await;
        let secret = rita.enrol_authenticator(&a).await;
        rita.post(&a, "/api/auth/sign-out", json!({})).await.expect(StatusCode::NO_CONTENT);
        let offer = rita.sign_in_as(&a, Some("acme"), "rita", "requires_two_factor").await;
        assert_eq!(offer["remember_browser_offered"], true, "{offer}");
        rita.verify(&a, "authenticator", &totp(&secret, 1), true).await.ok();
        assert!(rita.has_cookie("twofold_remember"), "no remember-browser cookie: {:?}", rita.cookies());
        rita.post(&b, "/api/auth/sign-out", json!({})).await.expect(StatusCode::NO_CONTENT);
        rita.sign_in_as(&b, Some("acme"), "rita", "signed_in").await;
        let browsers = rita.get(&a, "/api/account/browsers").await.ok();
        let browsers = browsers.as_array().unwrap();
        assert_eq!(browsers.len(), 1, "{browsers:?}");
        let id = browsers[0]["id"].as_str().unwrap();
        rita.delete(&a, &format!("/api/account/browsers/{id}")).await.expect(StatusCode::NO_CONTENT);
        rita.post(&a, "/api/auth/sign-out", json!({})).await.expect(StatusCode::NO_CONTENT);
        assert!(rita.has_cookie("twofold_remember"), "the browser still presents its cookie");
        rita.sign_in_as(&b, Some("acme"), "rita", "requires_two_factor").await;

        // A password change on A rotates the security stamp: paul's session on B ends; the
        // session that made the change carries over and works on both nodes.
        let open = admin.create_tenant(&a, "open").await;
        admin.create_user(&a, Some(&open), "paul").await;
        let paul_on_b = Person::new();
        paul_on_b.sign_in_as(&b, Some("open"), "paul", "signed_in").await;
        paul_on_b.get(&b, "/api/auth/me").await.ok();
        let paul_on_a = Person::new();
        paul_on_a.sign_in_as(&a, Some("open"), "paul", "signed_in").await;
        let new_password = "another long enough password";
        paul_on_a
            .put(&a, "/api/account/password", json!({ "current_password": PASSWORD, "new_password": new_password }))
            .await
            .expect(StatusCode::NO_CONTENT);
        // B keeps a session it just read for under a second (its session cache), so the
        // end may take that long to reach it, never longer.
        within_a_second("a session ended by a password change on A", async || {
            paul_on_b.get(&b, "/api/auth/me").await.status == StatusCode::UNAUTHORIZED
        })
        .await;
        paul_on_b.get(&b, "/api/auth/me").await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        paul_on_a.get(&b, "/api/auth/me").await.ok();
        paul_on_a.get(&a, "/api/auth/me").await.ok();
        paul_on_b
            .sign_in(&b, Some("open"), "paul", PASSWORD)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
        assert_eq!(paul_on_b.sign_in(&b, Some("open"), "paul", new_password).await.ok()["status"], "signed_in");

        d.assert_running();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn second_factors_are_single_use_and_lockout_counts_on_every_node() {
        let mut d = Deployment::start(true);
        let (a, b) = (d.a.url().to_owned(), d.b.url().to_owned());
        let admin = Person::new();
        admin.sign_in_admin(&a).await;
        let acme = admin.create_tenant(&a, "acme").await;
        admin.set_feature(&a, &acme, "forced").await;

        // Started on A, verified on B; the same code again on A is a replay.
        admin.create_user(&a, Some(&acme), "tina").await;
        let tina = Person::new();
        tina.sign_in_as(&a, Some("acme"), "tina", "requires_enrollment").await;
        let secret = tina.enrol_authenticator(&a).await;
        let tina = Person::new();
        tina.sign_in_as(&a, Some("acme"), "tina", "requires_two_factor").await;
        let code = totp(&secret, 1);
        assert_eq!(tina.verify(&b, "authenticator", &code, false).await.ok()["status"], "signed_in");
        tina.get(&a, "/api/auth/me").await.ok();
        let again = Person::new();
        again.sign_in_as(&a, Some("acme"), "tina", "requires_two_factor").await;
        again.verify(&a, "authenticator", &code, false).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_code");

        // One authenticator step redeemed by eight requests over both nodes at once.
        admin.create_user(&a, Some(&acme), "pia").await;
        let pia = Person::new();
        pia.sign_in_as(&a, Some("acme"), "pia", "requires_enrollment").await;
        let secret = pia.enrol_authenticator(&b).await;
        let pia = Person::new();
        pia.sign_in_as(&a, Some("acme"), "pia", "requires_two_factor").await;
        let responses = redeem_in_parallel(&d, &pia, "authenticator", &totp(&secret, 1), 4).await;
        assert_exactly_one_winner(&responses, "authenticator step");

        // One emailed code, the same way. erin enrols her address by email (sent by A,
        // confirmed on B), then signs in on B and the code goes to both nodes at once.
        admin.create_user(&a, Some(&acme), "erin").await;
        let erin = Person::new();
        erin.sign_in_as(&a, Some("acme"), "erin", "requires_enrollment").await;
        erin.post(&a, "/api/auth/enroll/email", json!({ "email": "erin@example.test" })).await.ok();
        let code = d.mail().next_code("erin@example.test");
        assert_eq!(
            erin.post(&b, "/api/auth/enroll/email/confirm", json!({ "code": code })).await.ok()["status"],
            "signed_in"
        );
        let erin = Person::new();
        let offer = erin.sign_in_as(&b, Some("acme"), "erin", "requires_two_factor").await;
        assert_eq!(offer["providers"][0]["provider"], "email", "{offer}");
        erin.post(&b, "/api/auth/sign-in/send-code", json!({ "method": "email" })).await.ok();
        let code = d.mail().next_code("erin@example.test");
        let responses = redeem_in_parallel(&d, &erin, "email", &code, 4).await;
        assert_exactly_one_winner(&responses, "emailed code");

        // Lockout: three wrong codes on A and two on B make five, the limit; then both
        // nodes refuse even the right code, and the password step too.
        admin.create_user(&a, Some(&acme), "lars").await;
        let lars = Person::new();
        lars.sign_in_as(&a, Some("acme"), "lars", "requires_enrollment").await;
        let secret = lars.enrol_authenticator(&a).await;
        let lars = Person::new();
        lars.sign_in_as(&a, Some("acme"), "lars", "requires_two_factor").await;
        let wrong = wrong_totp(&secret);
        for (node, left) in [(&a, 4), (&a, 3), (&a, 2), (&b, 1)] {
            let r = lars.verify(node, "authenticator", &wrong, false).await;
            r.assert_error(StatusCode::UNAUTHORIZED, "invalid_code");
            assert_eq!(r.body["attempts_left"], left, "the count must include the other node's failures: {}", r.body);
        }
        let r = lars.verify(&b, "authenticator", &wrong, false).await;
        r.assert_error(StatusCode::LOCKED, "locked_out");
        assert!(r.headers.contains_key(RETRY_AFTER));
        let right = totp(&secret, 1);
        for node in [&a, &b] {
            lars.verify(node, "authenticator", &right, false).await.assert_error(StatusCode::LOCKED, "locked_out");
            Person::new()
                .sign_in(node, Some("acme"), "lars", PASSWORD)
                .await
                .assert_error(StatusCode::LOCKED, "locked_out");
        }

        d.assert_running();
    }

    /// `signin::opened`: a pending sign-in keeps what any node needs to verify its
    /// authenticator code in one statement, so the node that did not open it does so
    /// too. Its metrics count a wrong and a right code there (and the other node's
    /// none); a step already used goes the general way, which answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_sign_in_opened_on_one_node_is_verified_on_the_other_in_one_statement() {
        let mut d = Deployment::start_with(false, &[("TWOFOLD_METRICS_BIND", "127.0.0.1:0")]);
        let (a, b) = (d.a.url().to_owned(), d.b.url().to_owned());
        let metrics = |node: &mut Node| {
            let line = node.wait_for_log("twofold listening", 1, Duration::from_secs(1));
            let v: Value = serde_json::from_str(&line).unwrap();
            format!("http://{}/metrics", v["fields"]["metrics_addr"].as_str().expect("metrics_addr"))
        };
        let (metrics_a, metrics_b) = (metrics(&mut d.a), metrics(&mut d.b));
        // The sum of the samples whose name and labels start with `prefix`.
        let sampled = async |url: &str, prefix: &str| -> f64 {
            let text = reqwest::get(url).await.unwrap().text().await.unwrap();
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit_once(' '))
                .map(|(_, v)| v.trim().parse::<f64>().unwrap())
                .sum()
        };
        let one_statement = async |url: &str| sampled(url, "twofold_one_statement_verifications_total ").await;
        // Reads of users' policy inputs, kept or not.
        let subjects = async |url: &str| sampled(url, "twofold_cache_requests_total{cache=\"subjects\"").await;
        let admin = Person::new();
        admin.sign_in_admin(&a).await;
        let acme = admin.create_tenant(&a, "acme").await;
        admin.set_feature(&a, &acme, "forced").await;
        let olga_id = admin.create_user(&a, Some(&acme), "olga").await;
        let olga = Person::new();
        olga.sign_in_as(&a, Some("acme"), "olga", "requires_enrollment").await;
        let secret = olga.enrol_authenticator(&a).await;
        let (before_a, before_b) = (one_statement(&metrics_a).await, one_statement(&metrics_b).await);

        let olga = Person::new();
        olga.sign_in_as(&a, Some("acme"), "olga", "requires_two_factor").await;
        let subjects_before = subjects(&metrics_b).await;
        let r = olga.verify(&b, "authenticator", &wrong_totp(&secret), false).await;
        r.assert_error(StatusCode::UNAUTHORIZED, "invalid_code");
        assert_eq!(r.body["attempts_left"], 4, "{}", r.body);
        let code = totp(&secret, 1);
        assert_eq!(olga.verify(&b, "authenticator", &code, false).await.ok()["status"], "signed_in");
        // B resolved the policy from what the token claims of olga's inputs, which the
        // statement held against her row: it read none of them.
        assert_eq!(subjects(&metrics_b).await - subjects_before, 0.0, "B read olga's policy inputs");
        // The samples are there to count: an effective-policy read of olga on A reads them.
        let subjects_of_a = subjects(&metrics_a).await;
        admin.get(&a, &format!("/api/users/{olga_id}/policy")).await.ok();
        assert!(subjects(&metrics_a).await > subjects_of_a, "no read of policy inputs counted on A");
        olga.get(&a, "/api/auth/me").await.ok();
        assert_eq!(one_statement(&metrics_b).await - before_b, 2.0);
        assert_eq!(one_statement(&metrics_a).await - before_a, 0.0);

        // The same step by another sign-in: the statement refuses, the general way answers.
        let again = Person::new();
        again.sign_in_as(&a, Some("acme"), "olga", "requires_two_factor").await;
        again.verify(&b, "authenticator", &code, false).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_code");
        assert_eq!(one_statement(&metrics_b).await - before_b, 2.0);

        d.assert_running();
    }

    /// What a request answered while the database was down.
    fn assert_unavailable(r: &Resp, what: &str) {
        assert_eq!(
            (r.status, r.body["error"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")),
            "{what} during the outage: {}",
            r.body
        );
        assert!(r.headers.contains_key(RETRY_AFTER), "{what}: 503 without Retry-After");
        assert!(r.elapsed <= ACQUIRE_TIMEOUT + SLACK, "{what} took {:?}, beyond the acquire timeout", r.elapsed);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_passkey_challenge_is_answered_once_across_nodes() {
        let mut d = Deployment::start_with(false, &[("TWOFOLD_PUBLIC_URL", PASSKEY_ORIGIN)]);
        let (a, b) = (d.a.url().to_owned(), d.b.url().to_owned());
        let admin = Person::new();
        admin.sign_in_admin(&a).await;
        let acme = admin.create_tenant(&a, "acme").await;
        admin.set_feature(&a, &acme, "forced").await;
        admin.create_user(&a, Some(&acme), "pia").await;
        let mut key = SoftAuthenticator::new("localhost", PASSKEY_ORIGIN);

        // Enrolment started on A, finished on B: the ceremony lives in the database.
        let pia = Person::new();
        pia.sign_in_as(&a, Some("acme"), "pia", "requires_enrollment").await;
        let options = pia.post(&a, "/api/auth/enroll/passkey", json!({ "name": "Key" })).await.ok();
        let credential = key.register(&options["options"]);
        let body = json!({ "challenge_id": options["challenge_id"], "credential": credential });
        let done = pia.post(&b, "/api/auth/enroll/passkey/confirm", body).await.ok();
        assert_eq!(done["status"], "signed_in", "{done}");

        // A passwordless challenge issued by A and redeemed on A is refused by B.
        let options = Person::new().post(&a, "/api/auth/passkey/options", json!({})).await.ok();
        let body = json!({ "challenge_id": options["challenge_id"], "credential": key.assert(&options["options"]) });
        let first = Person::new().post(&a, "/api/auth/passkey", body.clone()).await.ok();
        assert_eq!(first["status"], "signed_in", "{first}");
        Person::new()
            .post(&b, "/api/auth/passkey", body)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");

        // The same answer sent to both nodes at once, four copies each: one sign-in.
        let options = Person::new().post(&b, "/api/auth/passkey/options", json!({})).await.ok();
        let body = json!({ "challenge_id": options["challenge_id"], "credential": key.assert(&options["options"]) });
        let barrier = Arc::new(Barrier::new(8));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..8 {
            let base = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (body, barrier, http) = (body.clone(), barrier.clone(), http());
            tasks.spawn(async move {
                barrier.wait().await;
                send(&http, &base, Method::POST, "/api/auth/passkey", Some(&body), "").await
            });
        }
        let answers = tasks.join_all().await;
        let outcomes: Vec<String> = answers.iter().map(|r| format!("{} {}", r.status.as_u16(), r.outcome())).collect();
        assert_eq!(answers.iter().filter(|r| r.status == StatusCode::OK).count(), 1, "{outcomes:?}");
        for r in answers.iter().filter(|r| r.status != StatusCode::OK) {
            r.assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");
        }

        // The second factor: challenge from A's pending sign-in, answered on B, then again on A.
        let pia = Person::new();
        pia.sign_in_as(&a, Some("acme"), "pia", "requires_two_factor").await;
        let options = pia.post(&a, "/api/auth/sign-in/passkey/options", json!({})).await.ok();
        let body = json!({ "challenge_id": options["challenge_id"], "credential": key.assert(&options["options"]) });
        let done = pia.post(&b, "/api/auth/sign-in/passkey", body.clone()).await.ok();
        assert_eq!(done["status"], "signed_in", "{done}");
        let again = pia.post(&a, "/api/auth/sign-in/passkey", body).await;
        assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{}", again.body);

        // A copy of the key behind the counter, used on the other node: refused there too.
        let mut clone = key.clone();
        clone.counter -= 1;
        let options = Person::new().post(&a, "/api/auth/passkey/options", json!({})).await.ok();
        let body = json!({ "challenge_id": options["challenge_id"], "credential": clone.assert(&options["options"]) });
        Person::new()
            .post(&b, "/api/auth/passkey", body)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");
        d.assert_running();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_database_restart_answers_503_and_both_nodes_recover_by_themselves() {
        let mut d = Deployment::start(false);
        let (a, b) = (d.a.url().to_owned(), d.b.url().to_owned());
        let admin = Person::new();
        admin.sign_in_admin(&a).await;
        admin.create_user(&a, None, "hugo").await;
        admin.put(&a, "/api/host/settings", settings("optional", 1)).await.ok();

        // Settings saved one after another, alternating nodes, while PostgreSQL shuts down
        // under them: the first write that fails, whether it was in flight when the server
        // terminated its connection (SQLSTATE 57P01) or found no server at all, must answer
        // 503, never 500.
        let writer = {
            let (admin, a, b) = (admin.clone(), a.clone(), b.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for days in 2.. {
                    let node = if days % 2 == 0 { &a } else { &b };
                    let r = admin.put(node, "/api/host/settings", settings("optional", days)).await;
                    let failed = r.status != StatusCode::OK;
                    answers.push((days, r));
                    if failed {
                        return answers;
                    }
                }
                unreachable!()
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stopping = Instant::now();
        let cluster = &d.cluster;
        tokio::task::block_in_place(|| cluster.stop_server());
        eprintln!("PostgreSQL stopped in {} ms", stopping.elapsed().as_millis());
        let answers = writer.await.unwrap();
        let (last_days, last) = answers.last().unwrap();
        assert_unavailable(last, "the first settings write the shutdown stopped");
        eprintln!("the first write the shutdown stopped answered 503 after {} ms", last.elapsed.as_millis());
        let saved_days = answers.iter().rev().find(|(_, r)| r.status == StatusCode::OK).map_or(1, |(d, _)| *d);
        assert!(answers.len() > 1, "no write succeeded before the shutdown");
        eprintln!("{} settings writes succeeded before the outage", answers.len() - 1);

        // During the outage, on both nodes at once: liveness stays up, readiness and every
        // database-backed request answer 503 unavailable within the acquire timeout.
        let mut probes = tokio::task::JoinSet::new();
        for node in [a.clone(), b.clone()] {
            let admin = admin.clone();
            probes.spawn(async move {
                let health = admin.get(&node, "/health").await;
                assert_eq!(health.status, StatusCode::OK, "/health during the outage: {}", health.body);
                assert!(health.elapsed < Duration::from_secs(1), "/health waited for the database");
                let stranger = Person::new();
                let (ready, me, sign_in, write) = tokio::join!(
                    admin.get(&node, "/ready"),
                    admin.get(&node, "/api/auth/me"),
                    stranger.sign_in(&node, None, "hugo", PASSWORD),
                    admin.put(&node, "/api/host/settings", settings("forced", 99)),
                );
                assert_unavailable(&ready, "/ready");
                assert_unavailable(&me, "/api/auth/me");
                assert_unavailable(&sign_in, "sign-in");
                assert_unavailable(&write, "a settings write");
            });
        }
        probes.join_all().await;

        // PostgreSQL comes back; nobody touches the nodes, and both serve again.
        let outage = Instant::now();
        tokio::task::block_in_place(|| cluster.start_server());
        let back = Instant::now();
        eprintln!("PostgreSQL restarted in {} ms", back.duration_since(outage).as_millis());
        for node in [&a, &b] {
            loop {
                let ready = admin.get(node, "/ready").await.status;
                let me = admin.get(node, "/api/auth/me").await.status;
                if ready == StatusCode::OK && me == StatusCode::OK {
                    break;
                }
                assert!(
                    back.elapsed() < Duration::from_secs(20),
                    "{node} still answers {ready}/{me} 20 s after PostgreSQL"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        eprintln!("both nodes ready {} ms after PostgreSQL was back", back.elapsed().as_millis());

        // Nothing half-written: the stored settings are those of the last write that
        // succeeded, or of the one in flight if its commit landed just before the
        // connection died, never the 503 writes' (behaviour forced, 99 days); and the audit
        // trail agrees with them, because settings and audit commit together.
        let stored = admin.get(&a, "/api/host/settings").await.ok()["settings"].clone();
        assert_eq!(stored, admin.get(&b, "/api/host/settings").await.ok()["settings"]);
        let stored_days = stored["remember_browser_days"].as_u64().unwrap();
        assert!(
            stored_days == u64::from(saved_days) || stored_days == u64::from(*last_days),
            "stored {stored}, last saved {saved_days}, in flight {last_days}"
        );
        assert_eq!(stored["behaviour"], "optional");
        // Straight from the database: there may be more events than one API page holds.
        sqlx::any::install_default_drivers();
        let db = sqlx::AnyPool::connect(&d.cluster.url()).await.unwrap();
        let afters: Vec<String> =
            sqlx::query_scalar("SELECT after_json FROM audit_events WHERE action = 'host_settings.updated'")
                .fetch_all(&db)
                .await
                .unwrap();
        db.close().await;
        let audited: Vec<Value> = afters.iter().map(|a| serde_json::from_str(a).unwrap()).collect();
        let newest = audited.iter().max_by_key(|a| a["remember_browser_days"].as_u64()).unwrap();
        assert_eq!(newest, &stored, "the newest audited settings differ from the stored ones");
        assert!(!audited.iter().any(|a| a["behaviour"] == "forced"), "a refused write was audited");

        // The change listeners reconnected by themselves, and notices flow again: a change
        // on A is enforced by B within a second, although B's cache is warm again.
        for node in [&mut d.a, &mut d.b] {
            node.wait_for_log("change listener connected", 2, Duration::from_secs(30));
        }
        eprintln!("both change listeners back {} ms after PostgreSQL", back.elapsed().as_millis());
        let hugo = Person::new();
        hugo.sign_in_as(&b, None, "hugo", "signed_in").await;
        admin.put(&a, "/api/host/settings", settings("forced", 3)).await.ok();
        within_a_second("host settings forced after the restart", async || {
            hugo.sign_in(&b, None, "hugo", PASSWORD).await.outcome() == "requires_enrollment"
        })
        .await;
        // Had B's listener reconnected again meanwhile, its flush, not the notice, could
        // have made the check pass.
        assert_eq!(d.b.count_log("change listener connected"), 2, "B's listener reconnected during the check");

        d.assert_running();
    }

    /// The hot pool of PostgreSQL's single statements (`db::hot`) gives a connection back
    /// without a ping, so it must give back only those whose statement ran to its end: a
    /// failed statement or one cut off (a client that went away) may leave the protocol
    /// between two messages, and the next request would read the last one's answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_hot_pool_lends_again_only_connections_whose_statement_finished() {
        use std::str::FromStr;
        use twofold_server::db::hot;

        async fn backend(lent: &mut hot::Lent<'_>) -> Result<i32, sqlx::Error> {
            sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(lent.conn()?).await
        }
        async fn next_backend(pool: &hot::Pool) -> i32 {
            let mut lent = pool.get().await.unwrap();
            let pid = backend(&mut lent).await;
            lent.settle(pid).unwrap()
        }

        let cluster = Cluster::start();
        sqlx::any::install_default_drivers();
        let options = sqlx::any::AnyConnectOptions::from_str(&cluster.url()).unwrap();
        let ping_after = Duration::from_millis(200);
        let pool = hot::Pool::new(options.clone(), 1, Duration::from_millis(500), ping_after);

        // A statement that finished: the same backend serves the next one.
        let first = next_backend(&pool).await;
        assert_eq!(next_backend(&pool).await, first, "a finished statement's connection was not kept");
        assert_eq!(pool.counts(), (1, 1));

        // One lent, none left: the next waits for the acquire timeout and gets the error
        // that answers 503, not a connection beyond the maximum.
        let lent = pool.get().await.unwrap();
        let waited = Instant::now();
        assert!(matches!(pool.get().await.err(), Some(sqlx::Error::PoolTimedOut)));
        assert!(waited.elapsed() >= Duration::from_millis(450), "gave up after {:?}", waited.elapsed());
        drop(lent);

        // Dropped unsettled (as when the request's future is dropped): closed, and the
        // next statement runs on a new backend.
        let after_drop = next_backend(&pool).await;
        assert_ne!(after_drop, first, "a connection nobody settled was lent again");

        // A failed statement: closed as well.
        let mut lent = pool.get().await.unwrap();
        let failed: Result<i32, sqlx::Error> = sqlx::query_scalar("SELECT 1 / 0").fetch_one(lent.conn().unwrap()).await;
        assert!(lent.settle(failed).is_err());
        let after_failure = next_backend(&pool).await;
        assert_ne!(after_failure, after_drop, "the connection of a failed statement was lent again");

        // Cut off mid-statement, the answer still on its way: never read by the next one.
        let cut = tokio::time::timeout(Duration::from_millis(100), async {
            let mut lent = pool.get().await.unwrap();
            let slow: Result<i32, sqlx::Error> =
                sqlx::query_scalar("SELECT 7 FROM pg_sleep(0.5)").fetch_one(lent.conn().unwrap()).await;
            lent.settle(slow)
        })
        .await;
        assert!(cut.is_err(), "the slow statement was not cut off");
        let mut lent = pool.get().await.unwrap();
        let answer: Result<i32, sqlx::Error> = sqlx::query_scalar("SELECT 42").fetch_one(lent.conn().unwrap()).await;
        assert_eq!(lent.settle(answer).unwrap(), 42, "read another statement's answer");
        let after_cut = next_backend(&pool).await;
        assert_ne!(after_cut, after_failure);

        // PostgreSQL ends the idle connection (a restart, an administrator): after an idle
        // spell the pool pings first and lends a new one, instead of failing a request.
        let admin = sqlx::AnyPool::connect_with(options).await.unwrap();
        sqlx::query("SELECT pg_terminate_backend($1)").bind(after_cut).execute(&admin).await.unwrap();
        admin.close().await;
        tokio::time::sleep(ping_after + Duration::from_millis(100)).await;
        let replaced = next_backend(&pool).await;
        assert_ne!(replaced, after_cut, "lent a connection PostgreSQL had closed");

        // Closed: lends nothing more.
        pool.close().await;
        assert!(matches!(pool.get().await.err(), Some(sqlx::Error::PoolClosed)));
        assert_eq!(pool.counts(), (0, 0));
    }
}
