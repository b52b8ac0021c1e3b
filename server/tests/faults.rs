//! Crash consistency: the real `twofold` binary is killed with SIGKILL in the middle of a
//! burst of concurrent writes and sign-ins, started again on the same database, and then
//! every acknowledged write must be there, nothing may be half-written, and the audit
//! trail must agree with the data. Once over a SQLite file, once over PostgreSQL.
//!
//! The burst is a set of streams, each a sequential client of its own, so the order of
//! its writes is known: host and tenant settings, tenant features, user creations, role
//! grants and revocations, admins' per-user 2FA switches, password sign-ins and full
//! sign-ins with an authenticator code. Every write carries a value no other write of its
//! stream carries. Some scopes have two writers at once, whose values differ too, so the
//! audit trail must also show each change made from the state the previous one left. When the process dies, each stream has a prefix of acknowledged
//! writes (a 2xx arrived) and at most one request without an answer: that one may or may
//! not have committed, so the checks accept either, and never anything older.
//!
//! The PostgreSQL variant starts a throwaway cluster of its own (tests/support/nodes.rs)
//! and fails, never skips, where PostgreSQL is not installed. The tests sit in `mod
//! faults` so scripts/test can pick each variant by name for its phase.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[path = "support/nodes.rs"]
mod nodes;
#[path = "support/smtp.rs"]
mod smtp;
use nodes::{ADMIN_PASSWORD, Cluster, Node, PASSWORD, Person, Resp, settings, totp};

/// Users per sign-in stream kind; each authenticator user signs in once in the burst,
/// since a time step is accepted only once per user.
const VAULT_USERS: usize = 6;
const PASSWORD_USERS: usize = 3;
const SWITCH_USERS: usize = 4;
/// The longest the burst may take to reach its kill point.
/// Concurrent writers of the host's and of tenant "plain"'s settings, and of tenant
/// "f1"'s feature; the other scopes have one each.
const WRITERS: u32 = 2;
const BURST_DEADLINE: Duration = Duration::from_secs(40);

// ---------------------------------------------------------------- streams

/// One sequential stream of writes: everything sent, in order, and how many of them were
/// acknowledged. A stream ends at its first request without an answer, so only the last
/// sent one can be unacknowledged.
#[derive(Debug, Clone)]
struct Stream<T> {
    sent: Vec<T>,
    acked: usize,
}

impl<T: Clone + PartialEq + std::fmt::Debug> Stream<T> {
    fn new() -> Self {
        Stream { sent: Vec::new(), acked: 0 }
    }

    fn in_flight(&self) -> bool {
        self.sent.len() > self.acked
    }

    /// What the stored state may be: the last acknowledged value (or `initial`), or the
    /// in-flight one.
    fn allowed(&self, initial: T) -> Vec<T> {
        let mut out = vec![if self.acked == 0 { initial } else { self.sent[self.acked - 1].clone() }];
        if self.in_flight() {
            out.push(self.sent.last().unwrap().clone());
        }
        out
    }

    /// The audit trail of a stream must be exactly its acknowledged writes in order,
    /// plus the in-flight one if it committed.
    #[track_caller]
    fn assert_audited(&self, audited: &[T], what: &str) {
        let ok = audited == &self.sent[..self.acked] || (self.in_flight() && audited == &self.sent[..]);
        assert!(ok, "{what}: audited {audited:?}, but {} of sent {:?} were acknowledged", self.acked, self.sent);
    }
}

/// What the stored state of a scope written by several concurrent streams may be: the
/// last write that committed is some stream's last acknowledged or in-flight one.
fn allowed_of<T: Clone + PartialEq + std::fmt::Debug>(streams: &[&Stream<T>], initial: T) -> Vec<T> {
    streams.iter().flat_map(|st| st.allowed(initial.clone())).collect()
}

/// The audit trail of a scope written by several streams whose values cannot be told
/// apart: as many events as acknowledged writes, plus at most the in-flight ones.
#[track_caller]
fn assert_audit_count<T: Clone + PartialEq + std::fmt::Debug>(streams: &[&Stream<T>], audited: usize, what: &str) {
    let acked: usize = streams.iter().map(|st| st.acked).sum();
    let in_flight = streams.iter().filter(|st| st.in_flight()).count();
    assert!(
        (acked..=acked + in_flight).contains(&audited),
        "{what}: {audited} events for {acked} acknowledged writes and {in_flight} in flight"
    );
}

/// Groups entries by their first element, keeping the order of first appearance.
fn grouped<'a, T>(items: impl Iterator<Item = (&'a String, T)>) -> Vec<(&'a String, Vec<T>)> {
    let mut out: Vec<(&String, Vec<T>)> = Vec::new();
    for (key, item) in items {
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(item),
            None => out.push((key, vec![item])),
        }
    }
    out
}

/// How many writes of each kind were acknowledged so far; the kill waits for all.
#[derive(Default)]
struct Progress {
    settings: AtomicUsize,
    features: AtomicUsize,
    users: AtomicUsize,
    roles: AtomicUsize,
    switches: AtomicUsize,
    sign_ins: AtomicUsize,
    vault_sign_ins: AtomicUsize,
    /// Users acknowledged by the host's user stream and by the tenant's: the check after
    /// the restart signs in the last of each, so the kill waits for one of each, not
    /// only for enough users in all (the role streams create users too).
    host_users: AtomicUsize,
    tenant_users: AtomicUsize,
}

impl Progress {
    fn counts(&self) -> [usize; 7] {
        [&self.settings, &self.features, &self.users, &self.roles, &self.switches, &self.sign_ins, &self.vault_sign_ins]
            .map(|c| c.load(Ordering::SeqCst))
    }

    /// Enough of every kind acknowledged that the kill lands in the middle of the burst.
    fn reached(&self) -> bool {
        let [settings, features, users, roles, switches, sign_ins, vault] = self.counts();
        let each_scope = self.host_users.load(Ordering::SeqCst) >= 1 && self.tenant_users.load(Ordering::SeqCst) >= 1;
        settings >= 15
            && features >= 4
            && users >= 4
            && each_scope
            && roles >= 3
            && switches >= 4
            && sign_ins >= 3
            && vault >= 1
    }
}

/// One burst request: `Some` on an acknowledgement, `None` when no answer came (the
/// server died under it). Any other answer fails the test: nothing in the burst may be
/// refused, and certainly never with a 500.
async fn burst_call(
    who: &Person,
    base: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    expect: StatusCode,
) -> Option<Resp> {
    match who.try_call(base, method, path, body.as_ref()).await {
        Ok(resp) => {
            assert_eq!(resp.status, expect, "{path} during the burst: {}", resp.body);
            Some(resp)
        }
        Err(_) => None,
    }
}

/// Settings whose every field a write of the burst sets; `n` makes them unique in
/// the stream (remember_browser off tells them from the defaults, which have it on).
fn settings_value(n: u32) -> Value {
    let mut v = settings("optional", 1 + n % 365);
    v["enrollment_grace_days"] = json!((n / 365) % 91);
    v["remember_browser"] = json!(false);
    v
}

/// The part of stored or audited settings that tells the writes apart.
fn settings_key(v: &Value) -> (u64, u64, bool) {
    (
        v["remember_browser_days"].as_u64().unwrap(),
        v["enrollment_grace_days"].as_u64().unwrap(),
        v["remember_browser"].as_bool().unwrap(),
    )
}

/// Writer `writer` of a scope's settings; several writers of one scope write disjoint
/// values, so each audited value names the stream that wrote it.
async fn settings_stream(
    admin: Person,
    base: String,
    path: String,
    writer: u32,
    progress: Arc<Progress>,
) -> Stream<Value> {
    let mut stream = Stream::new();
    for n in 1.. {
        let value = settings_value(n * WRITERS + writer);
        stream.sent.push(value.clone());
        if burst_call(&admin, &base, Method::PUT, &path, Some(value), StatusCode::OK).await.is_none() {
            break;
        }
        stream.acked += 1;
        progress.settings.fetch_add(1, Ordering::SeqCst);
    }
    stream
}

async fn feature_stream(
    admin: Person,
    base: String,
    tenant: String,
    writer: usize,
    progress: Arc<Progress>,
) -> Stream<String> {
    let mut stream = Stream::new();
    // Every write of a stream differs from its one before.
    for behaviour in ["disabled", "forced", "optional"].iter().cycle().skip(writer) {
        stream.sent.push((*behaviour).to_owned());
        let path = format!("/api/tenants/{tenant}/feature");
        let body = json!({ "behaviour": behaviour });
        if burst_call(&admin, &base, Method::PUT, &path, Some(body), StatusCode::OK).await.is_none() {
            break;
        }
        stream.acked += 1;
        progress.features.fetch_add(1, Ordering::SeqCst);
    }
    stream
}

/// A user the burst asked for; `id` once its creation was acknowledged.
#[derive(Debug, Clone)]
struct Requested {
    username: String,
    email: Option<String>,
    tenant: Option<String>,
    id: Option<String>,
}

/// Creates one user; `None` when the server died under the request.
async fn create_user(admin: &Person, base: &str, requested: &mut Requested) -> Option<String> {
    let path = match &requested.tenant {
        Some(t) => format!("/api/tenants/{t}/users"),
        None => "/api/host/users".to_owned(),
    };
    let body = json!({ "username": requested.username, "password": PASSWORD, "email": requested.email });
    let resp = burst_call(admin, base, Method::POST, &path, Some(body), StatusCode::CREATED).await?;
    let id = resp.body["id"].as_str().unwrap().to_owned();
    requested.id = Some(id.clone());
    Some(id)
}

async fn user_stream(
    admin: Person,
    base: String,
    tenant: Option<String>,
    prefix: &'static str,
    progress: Arc<Progress>,
) -> Vec<Requested> {
    let mut out = Vec::new();
    for n in 0.. {
        let username = format!("{prefix}{n}");
        let email = tenant.is_none().then(|| format!("{username}@example.com"));
        out.push(Requested { username, email, tenant: tenant.clone(), id: None });
        if create_user(&admin, &base, out.last_mut().unwrap()).await.is_none() {
            break;
        }
        progress.users.fetch_add(1, Ordering::SeqCst);
        let scope = if tenant.is_some() { &progress.tenant_users } else { &progress.host_users };
        scope.fetch_add(1, Ordering::SeqCst);
    }
    out
}

/// New users of a tenant made its admins, every other one demoted again: per user, a
/// stream of "is tenant admin" values.
async fn role_stream(
    admin: Person,
    base: String,
    tenant: String,
    prefix: &'static str,
    progress: Arc<Progress>,
) -> (Vec<Requested>, Vec<(String, Stream<bool>)>) {
    let (mut users, mut roles) = (Vec::new(), Vec::new());
    'burst: for n in 0.. {
        users.push(Requested { username: format!("{prefix}{n}"), email: None, tenant: Some(tenant.clone()), id: None });
        let Some(id) = create_user(&admin, &base, users.last_mut().unwrap()).await else { break };
        progress.users.fetch_add(1, Ordering::SeqCst);
        let mut stream = Stream::new();
        let ops: &[bool] = if n % 2 == 0 { &[true, false] } else { &[true] };
        for &grant in ops {
            stream.sent.push(grant);
            let answered = if grant {
                let body = json!({ "user_id": id });
                burst_call(
                    &admin,
                    &base,
                    Method::POST,
                    &format!("/api/tenants/{tenant}/admins"),
                    Some(body),
                    StatusCode::OK,
                )
                .await
            } else {
                let path = format!("/api/tenants/{tenant}/admins/{id}");
                burst_call(&admin, &base, Method::DELETE, &path, None, StatusCode::NO_CONTENT).await
            };
            if answered.is_none() {
                roles.push((id, stream));
                break 'burst;
            }
            stream.acked += 1;
            progress.roles.fetch_add(1, Ordering::SeqCst);
        }
        roles.push((id, stream));
    }
    (users, roles)
}

async fn switch_stream(admin: Person, base: String, user_id: String, progress: Arc<Progress>) -> Stream<bool> {
    let mut stream = Stream::new();
    let path = format!("/api/users/{user_id}/two-factor");
    for n in 0.. {
        let enabled = n % 2 == 0;
        stream.sent.push(enabled);
        let body = json!({ "enabled": enabled });
        if burst_call(&admin, &base, Method::PUT, &path, Some(body), StatusCode::OK).await.is_none() {
            break;
        }
        stream.acked += 1;
        progress.switches.fetch_add(1, Ordering::SeqCst);
    }
    stream
}

/// A browser whose sign-in was acknowledged, with the user it signed in.
#[derive(Debug, Clone)]
struct Session {
    person: Person,
    username: String,
}

async fn password_sign_ins(base: String, username: String, progress: Arc<Progress>) -> Vec<Session> {
    let mut out = Vec::new();
    loop {
        let person = Person::new();
        let body = json!({ "tenant": "plain", "username": username, "password": PASSWORD });
        let Some(resp) =
            burst_call(&person, &base, Method::POST, "/api/auth/sign-in", Some(body), StatusCode::OK).await
        else {
            break;
        };
        assert_eq!(resp.body["status"], "signed_in", "{}", resp.body);
        out.push(Session { person, username: username.clone() });
        progress.sign_ins.fetch_add(1, Ordering::SeqCst);
    }
    out
}

/// A full sign-in with an authenticator code, once.
async fn vault_sign_in(base: String, username: String, secret: String, progress: Arc<Progress>) -> Option<Session> {
    let person = Person::new();
    let body = json!({ "tenant": "vault", "username": username, "password": PASSWORD });
    let resp = burst_call(&person, &base, Method::POST, "/api/auth/sign-in", Some(body), StatusCode::OK).await?;
    assert_eq!(resp.body["status"], "requires_two_factor", "{}", resp.body);
    // Enrolment used the step of its time; the next one is still within the accepted skew.
    let code = tokio::task::spawn_blocking(move || totp(&secret, 1)).await.unwrap();
    let body = json!({ "method": "authenticator", "code": code, "remember_browser": false });
    let resp = burst_call(&person, &base, Method::POST, "/api/auth/sign-in/verify", Some(body), StatusCode::OK).await?;
    assert_eq!(resp.body["status"], "signed_in", "{}", resp.body);
    progress.vault_sign_ins.fetch_add(1, Ordering::SeqCst);
    Some(Session { person, username })
}

// ---------------------------------------------------------------- the scenario

/// Everything the burst did, gathered once every stream has ended.
struct Ledger {
    settings: Vec<(String, String, Stream<Value>)>,
    features: Vec<(String, Stream<String>)>,
    users: Vec<Requested>,
    roles: Vec<(String, String, Stream<bool>)>,
    switches: Vec<(String, Stream<bool>)>,
    sessions: Vec<Session>,
}

/// What exists before the burst.
struct Setup {
    admin: Person,
    tenants: BTreeMap<&'static str, String>,
    vault: Vec<(String, String)>,
    plain: Vec<String>,
    switch_users: Vec<String>,
}

async fn setup(base: &str) -> Setup {
    let admin = Person::new();
    admin.sign_in_admin(base).await;
    let mut tenants = BTreeMap::new();
    for name in ["plain", "vault", "f1", "f2"] {
        tenants.insert(name, admin.create_tenant(base, name).await);
    }
    // Everyone in "vault" needs a second factor; nobody elsewhere does.
    admin.set_feature(base, &tenants["vault"], "forced").await;
    let mut enrolments = tokio::task::JoinSet::new();
    for i in 0..VAULT_USERS {
        let (admin, base, vault) = (admin.clone(), base.to_owned(), tenants["vault"].clone());
        enrolments.spawn(async move {
            let username = format!("vault{i}");
            admin.create_user(&base, Some(&vault), &username).await;
            let person = Person::new();
            person.sign_in_as(&base, Some("vault"), &username, "requires_enrollment").await;
            let secret = person.enrol_authenticator(&base).await;
            (username, secret)
        });
    }
    let vault = enrolments.join_all().await;
    let mut plain = Vec::new();
    for i in 0..PASSWORD_USERS {
        let username = format!("plain{i}");
        admin.create_user(base, Some(&tenants["plain"]), &username).await;
        plain.push(username);
    }
    let mut switch_users = Vec::new();
    for i in 0..SWITCH_USERS {
        switch_users.push(admin.create_user(base, Some(&tenants["plain"]), &format!("switch{i}")).await);
    }
    Setup { admin, tenants, vault, plain, switch_users }
}

/// Runs the burst against `node` and SIGKILLs it once every kind of write has been
/// acknowledged a few times, while all streams are still sending.
async fn burst_and_kill(node: &mut Node, s: &Setup) -> Ledger {
    let base = node.url().to_owned();
    let progress = Arc::new(Progress::default());
    let p = || progress.clone();
    let admin = || s.admin.clone();
    let b = || base.clone();

    let mut settings = Vec::new();
    let scopes = [("host".to_owned(), "/api/host/settings".to_owned())]
        .into_iter()
        .chain(s.tenants.values().map(|t| (t.clone(), format!("/api/tenants/{t}/settings"))));
    for (scope, path) in scopes {
        let writers = if scope == "host" || scope == s.tenants["plain"] { WRITERS } else { 1 };
        for writer in 0..writers {
            settings.push((
                scope.clone(),
                path.clone(),
                tokio::spawn(settings_stream(admin(), b(), path.clone(), writer, p())),
            ));
        }
    }
    let features: Vec<_> = [("f1", 0), ("f1", 1), ("f2", 0)]
        .iter()
        .map(|(t, writer)| {
            (s.tenants[t].clone(), tokio::spawn(feature_stream(admin(), b(), s.tenants[t].clone(), *writer, p())))
        })
        .collect();
    let user_streams = vec![
        tokio::spawn(user_stream(admin(), b(), None, "burst-host-", p())),
        tokio::spawn(user_stream(admin(), b(), Some(s.tenants["plain"].clone()), "burst-plain-", p())),
    ];
    let role_streams: Vec<_> = [("f1", "burst-f1-"), ("f2", "burst-f2-")]
        .iter()
        .map(|(t, prefix)| {
            (s.tenants[t].clone(), tokio::spawn(role_stream(admin(), b(), s.tenants[t].clone(), prefix, p())))
        })
        .collect();
    let switches: Vec<_> = s
        .switch_users
        .iter()
        .map(|id| (id.clone(), tokio::spawn(switch_stream(admin(), b(), id.clone(), p()))))
        .collect();
    let password: Vec<_> = s.plain.iter().map(|u| tokio::spawn(password_sign_ins(b(), u.clone(), p()))).collect();
    let vault: Vec<_> =
        s.vault.iter().map(|(u, secret)| tokio::spawn(vault_sign_in(b(), u.clone(), secret.clone(), p()))).collect();

    let started = Instant::now();
    while !progress.reached() && started.elapsed() < BURST_DEADLINE {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // std's Child::kill is SIGKILL on Unix: no graceful shutdown, no destructor, no flush.
    node.child.kill().unwrap();
    let status = node.child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "the server did not die of SIGKILL: {status}");
    let counts = progress.counts();
    eprintln!(
        "SIGKILL after {} ms; acknowledged [settings, features, users, roles, switches, sign-ins, 2FA sign-ins]: {counts:?}",
        started.elapsed().as_millis()
    );
    assert!(progress.reached(), "the burst did not reach its kill point within {BURST_DEADLINE:?}: {counts:?}");

    let mut ledger = Ledger {
        settings: Vec::new(),
        features: Vec::new(),
        users: Vec::new(),
        roles: Vec::new(),
        switches: Vec::new(),
        sessions: Vec::new(),
    };
    for (scope, path, task) in settings {
        ledger.settings.push((scope, path, task.await.unwrap()));
    }
    for (tenant, task) in features {
        ledger.features.push((tenant, task.await.unwrap()));
    }
    for task in user_streams {
        ledger.users.extend(task.await.unwrap());
    }
    for (tenant, task) in role_streams {
        let (users, roles) = task.await.unwrap();
        ledger.users.extend(users);
        ledger.roles.extend(roles.into_iter().map(|(user, stream)| (tenant.clone(), user, stream)));
    }
    for (user, task) in switches {
        ledger.switches.push((user, task.await.unwrap()));
    }
    for task in password {
        ledger.sessions.extend(task.await.unwrap());
    }
    for task in vault {
        ledger.sessions.extend(task.await.unwrap());
    }
    // Every stream ends at a request without an answer, except the one-shot 2FA
    // sign-ins that finished before the kill.
    let in_flight = ledger.settings.iter().filter(|(_, _, st)| st.in_flight()).count()
        + ledger.features.iter().filter(|(_, st)| st.in_flight()).count()
        + ledger.switches.iter().filter(|(_, st)| st.in_flight()).count();
    eprintln!("{in_flight} settings, feature and switch writes were in flight at the kill");
    ledger
}

fn node_env(url: &str, secret_key: Option<String>) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("TWOFOLD_DATABASE_URL", url.to_owned()),
        ("TWOFOLD_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        ("TWOFOLD_COOKIE_SECURE", "false".to_owned()),
        ("TWOFOLD_BIND", "127.0.0.1:0".to_owned()),
        ("TWOFOLD_LOG_FORMAT", "json".to_owned()),
        ("TWOFOLD_LOG", "info".to_owned()),
    ];
    // Every client of the burst comes from 127.0.0.1, and plain users sign in over and
    // over: the request-rate limits would answer 429 to what is here a crash test.
    for key in [
        "TWOFOLD_SIGN_IN_PER_ADDRESS_PER_MINUTE",
        "TWOFOLD_SIGN_IN_PER_ACCOUNT_PER_MINUTE",
        "TWOFOLD_VERIFY_PER_ADDRESS_PER_MINUTE",
        "TWOFOLD_VERIFY_PER_ACCOUNT_PER_MINUTE",
        "TWOFOLD_ACCOUNT_PER_ADDRESS_PER_MINUTE",
        "TWOFOLD_ACCOUNT_PER_ACCOUNT_PER_MINUTE",
    ] {
        env.push((key, "0".to_owned()));
    }
    // SQLite runs without one: the generated key file beside the database must survive
    // the kill too, or no authenticator secret could be read after the restart.
    if let Some(key) = secret_key {
        env.push(("TWOFOLD_SECRET_KEY", key));
    }
    env
}

async fn kill_mid_burst_and_restart(url: &str, secret_key: Option<String>) {
    let env = node_env(url, secret_key);
    let started = Instant::now();
    let mut first = Node::start("first", &env);
    let s = setup(first.url()).await;
    eprintln!("set up in {} ms", started.elapsed().as_millis());
    let ledger = burst_and_kill(&mut first, &s).await;
    let node = Node::start("restarted", &env);
    check_through_the_api(node.url(), &s, &ledger).await;
    check_the_database(url, &s, &ledger).await;
    eprintln!("whole scenario in {} ms", started.elapsed().as_millis());
}

// ---------------------------------------------------------------- checks

async fn check_through_the_api(base: &str, s: &Setup, ledger: &Ledger) {
    // Sessions: the admin's (used by every admin stream) and every acknowledged sign-in.
    let me = s.admin.get(base, "/api/account").await.ok();
    assert_eq!(me["user"]["username"], "admin", "{me}");
    for session in &ledger.sessions {
        let me = session.person.get(base, "/api/account").await;
        assert_eq!(
            me.status,
            StatusCode::OK,
            "{}'s acknowledged session after the restart: {}",
            session.username,
            me.body
        );
        assert_eq!(me.body["user"]["username"], session.username.as_str(), "{}", me.body);
    }
    eprintln!("{} acknowledged sign-ins still signed in", ledger.sessions.len());

    for (scope, streams) in grouped(ledger.settings.iter().map(|(scope, path, st)| (scope, (path, st)))) {
        let path = streams[0].0;
        let stored = s.admin.get(base, path).await.ok();
        let stored = stored["settings"].clone();
        let keys: Vec<Stream<(u64, u64, bool)>> = streams
            .iter()
            .map(|(_, st)| Stream { sent: st.sent.iter().map(settings_key).collect(), acked: st.acked })
            .collect();
        // Before the first write of the burst, every scope has the defaults.
        let allowed = allowed_of(&keys.iter().collect::<Vec<_>>(), (14, 0, true));
        let key = settings_key(&stored);
        assert!(allowed.contains(&key), "settings of {scope}: stored {stored}, allowed {allowed:?}, {keys:?}");
        if let Some(sent) = streams.iter().flat_map(|(_, st)| &st.sent).find(|v| settings_key(v) == key) {
            for (field, value) in sent.as_object().unwrap() {
                match value.as_object() {
                    // A nested object written without a newer member (a provider added
                    // later) stores that member's default; what was written must match.
                    Some(members) => {
                        for (member, v) in members {
                            assert_eq!(&stored[field][member], v, "settings of {scope}: {field}.{member} differs");
                        }
                    }
                    None => {
                        assert_eq!(
                            &stored[field], value,
                            "settings of {scope}: {field} differs from the write that set it"
                        )
                    }
                }
            }
        }
    }
    for (tenant, streams) in grouped(ledger.features.iter().map(|(t, st)| (t, st))) {
        let stored = s.admin.get(base, &format!("/api/tenants/{tenant}/feature")).await.ok();
        let behaviour = stored["behaviour"].as_str().unwrap().to_owned();
        let allowed = allowed_of(&streams, "optional".to_owned());
        assert!(allowed.contains(&behaviour), "feature of {tenant}: {behaviour}, {streams:?}");
    }
    let roles: HashMap<&str, &Stream<bool>> = ledger.roles.iter().map(|(_, u, st)| (u.as_str(), st)).collect();
    for user in ledger.users.iter().filter(|u| u.id.is_some()) {
        let id = user.id.as_deref().unwrap();
        let got = s.admin.get(base, &format!("/api/users/{id}")).await;
        assert_eq!(got.status, StatusCode::OK, "acknowledged user {} after the restart: {}", user.username, got.body);
        assert_eq!(got.body["username"], user.username.as_str());
        assert_eq!(got.body["email"], json!(user.email));
        assert_eq!(got.body["tenant_id"], json!(user.tenant));
        let is_admin = got.body["roles"].as_array().unwrap().iter().any(|r| r["role"] == "tenant_admin");
        let expected = roles.get(id).map_or(vec![false], |st| st.allowed(false));
        assert!(expected.contains(&is_admin), "{}: tenant admin {is_admin}, stream {:?}", user.username, roles.get(id));
    }
    for (id, stream) in &ledger.switches {
        let got = s.admin.get(base, &format!("/api/users/{id}")).await.ok();
        let flag = got["two_factor_enabled"].as_bool().unwrap();
        assert!(stream.allowed(false).contains(&flag), "switch of {id}: {flag}, {stream:?}");
    }
    // Created users are whole: the last acknowledged ones of each scope can sign in.
    for (tenant, tenant_id) in [(None, None), (Some("plain"), Some(&s.tenants["plain"]))] {
        let last = ledger.users.iter().rfind(|u| u.id.is_some() && u.tenant.as_ref() == tenant_id);
        let last = last.unwrap_or_else(|| panic!("no user creation acknowledged in {tenant:?}"));
        let resp = Person::new().sign_in(base, tenant, &last.username, PASSWORD).await;
        assert_eq!(resp.ok()["status"], "signed_in");
    }
}

/// One audit event, straight from the table: the API pages, and hides nothing, but the
/// checks want all of them.
#[derive(Debug, sqlx::FromRow)]
struct Event {
    action: String,
    scope_key: String,
    target: String,
    before_json: Option<String>,
    after_json: Option<String>,
}

impl Event {
    fn after(&self) -> Value {
        serde_json::from_str(self.after_json.as_deref().unwrap()).unwrap()
    }

    fn before(&self) -> Value {
        serde_json::from_str(self.before_json.as_deref().unwrap()).unwrap()
    }
}

/// Each event's "before" is the previous event's "after": every change was made from
/// the state the one before it left, which is what an audit trail must tell.
#[track_caller]
fn assert_chained(audited: &[&Event], what: &str) {
    for (i, pair) in audited.windows(2).enumerate() {
        if pair[1].before() != pair[0].after() {
            let trail: Vec<String> = audited
                .iter()
                .map(|e| {
                    format!("{} -> {}", e.before_json.as_deref().unwrap_or("-"), e.after_json.as_deref().unwrap_or("-"))
                })
                .collect();
            panic!(
                "{what}: event {} of {} does not start where the one before ended:\n{}",
                i + 1,
                audited.len(),
                trail.join("\n")
            );
        }
    }
}

/// id, username, tenant_id, has_authenticator, two_factor_enabled, recovery codes.
type UserFacts = (String, String, Option<String>, i64, i64, i64);

async fn count(db: &sqlx::AnyPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn check_the_database(url: &str, s: &Setup, ledger: &Ledger) {
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(url).await.unwrap();
    let events: Vec<Event> =
        sqlx::query_as("SELECT action, scope_key, target, before_json, after_json FROM audit_events ORDER BY id")
            .fetch_all(&db)
            .await
            .unwrap();

    // No orphans: every row that belongs to a user has its user. (Foreign keys should
    // make these impossible; the check does not rely on them being enforced.)
    for table in [
        "role_assignments",
        "sessions",
        "sign_in_attempts",
        "one_time_codes",
        "authenticators",
        "recovery_codes",
        "remembered_browsers",
    ] {
        let sql =
            format!("SELECT COUNT(*) FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = t.user_id)");
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&db).await.unwrap();
        assert_eq!(n, 0, "{n} rows of {table} without their user");
    }
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM users u WHERE u.tenant_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = u.tenant_id)").await,
        0,
        "users of a tenant that does not exist"
    );

    // Tenants: each has its settings row and its creation event, and nothing else does.
    let tenants: HashSet<String> =
        sqlx::query_scalar("SELECT id FROM tenants").fetch_all(&db).await.unwrap().into_iter().collect();
    let created: HashSet<String> = events
        .iter()
        .filter(|e| e.action == "tenant.created")
        .map(|e| e.target.strip_prefix("tenant:").unwrap().to_owned())
        .collect();
    assert_eq!(tenants, created, "tenants and their tenant.created events differ");
    assert_eq!(tenants, s.tenants.values().cloned().collect::<HashSet<_>>());
    let settings_scopes: HashSet<String> =
        sqlx::query_scalar("SELECT scope_key FROM scope_settings").fetch_all(&db).await.unwrap().into_iter().collect();
    assert_eq!(
        settings_scopes.iter().filter(|k| *k != "host").cloned().collect::<HashSet<_>>(),
        tenants,
        "settings rows and tenants differ"
    );

    // Users: each has its user.created event with its name, each event its user, and
    // every user is one somebody asked for.
    let users: Vec<UserFacts> = sqlx::query_as(
        "SELECT id, username, tenant_id, has_authenticator, two_factor_enabled, \
         (SELECT COUNT(*) FROM recovery_codes r WHERE r.user_id = users.id) FROM users",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let created: HashMap<String, Value> = events
        .iter()
        .filter(|e| e.action == "user.created")
        .map(|e| (e.target.strip_prefix("user:").unwrap().to_owned(), e.after()))
        .collect();
    assert_eq!(
        users.iter().map(|u| u.0.clone()).collect::<HashSet<_>>(),
        created.keys().cloned().collect::<HashSet<_>>(),
        "users and their user.created events differ"
    );
    let mut known: HashSet<String> = ledger.users.iter().map(|u| u.username.clone()).collect();
    known.extend(["admin".to_owned()]);
    known.extend(s.vault.iter().map(|(u, _)| u.clone()));
    known.extend(s.plain.iter().cloned());
    known.extend((0..SWITCH_USERS).map(|i| format!("switch{i}")));
    for (id, username, _, has_authenticator, _, recovery_codes) in &users {
        assert_eq!(created[id]["username"], username.as_str(), "user.created of {id}");
        assert!(known.contains(username), "user {username} was never asked for");
        let confirmed: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM authenticators WHERE user_id = $1 AND confirmed = 1")
                .bind(id)
                .fetch_one(&db)
                .await
                .unwrap();
        assert_eq!(*has_authenticator, confirmed, "{username}: has_authenticator and its authenticator row differ");
        if *has_authenticator == 1 {
            assert!(*recovery_codes > 0, "{username} has an authenticator but no recovery codes");
        }
    }
    let requested_ids: HashSet<&str> = ledger.users.iter().filter_map(|u| u.id.as_deref()).collect();
    assert!(requested_ids.iter().all(|id| created.contains_key(*id)), "an acknowledged user is missing");
    let by_name: HashMap<&str, &UserFacts> = users.iter().map(|u| (u.1.as_str(), u)).collect();
    for (username, _) in &s.vault {
        assert_eq!(by_name[username.as_str()].3, 1, "{username} lost their authenticator");
    }

    // Roles: the host admin is the bootstrap admin alone; every tenant-admin row is a
    // user of that tenant whose newest role event is a grant, and every user whose
    // newest role event is a grant has the row.
    let roles: Vec<(String, String, String)> =
        sqlx::query_as("SELECT user_id, role, scope_key FROM role_assignments").fetch_all(&db).await.unwrap();
    let admin_id = &by_name["admin"].0;
    let mut latest_role_event: HashMap<(String, String), bool> = HashMap::new();
    let mut role_events: HashMap<String, Vec<bool>> = HashMap::new();
    for e in events.iter().filter(|e| e.action == "role.granted" || e.action == "role.revoked") {
        let user = e.target.strip_prefix("user:").unwrap().to_owned();
        let granted = e.action == "role.granted";
        latest_role_event.insert((user.clone(), e.scope_key.clone()), granted);
        role_events.entry(user).or_default().push(granted);
    }
    let mut with_role = HashSet::new();
    for (user, role, scope) in &roles {
        if role == "host_admin" {
            assert_eq!((user, scope.as_str()), (admin_id, "host"), "an unexpected host admin");
            continue;
        }
        assert_eq!(role, "tenant_admin");
        let tenant = users.iter().find(|u| &u.0 == user).unwrap().2.clone();
        assert_eq!(tenant.as_deref(), Some(scope.as_str()), "tenant admin of another tenant than their own");
        assert_eq!(
            latest_role_event.get(&(user.clone(), scope.clone())),
            Some(&true),
            "role row of {user} without a grant as newest event"
        );
        with_role.insert((user.clone(), scope.clone()));
    }
    for (key, granted) in &latest_role_event {
        assert_eq!(*granted, with_role.contains(key), "newest role event of {key:?} disagrees with the role rows");
    }
    for (tenant, user, stream) in &ledger.roles {
        stream.assert_audited(
            role_events.get(user).map_or(&[][..], Vec::as_slice),
            &format!("roles of {user} in {tenant}"),
        );
    }

    // Settings: the audited values of each scope are exactly its acknowledged writes (and
    // perhaps the one in flight) in order, each one's "before" is the previous "after",
    // and the newest "after" is what is stored.
    let stored: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT scope_key, remember_browser_days, enrollment_grace_days, remember_browser FROM scope_settings",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    for (scope, streams) in grouped(ledger.settings.iter().map(|(scope, _, st)| (scope, st))) {
        let audited: Vec<&Event> =
            events.iter().filter(|e| e.action.ends_with("settings.updated") && &e.scope_key == scope).collect();
        let afters: Vec<(u64, u64, bool)> = audited.iter().map(|e| settings_key(&e.after())).collect();
        for stream in &streams {
            let sent: Vec<(u64, u64, bool)> = stream.sent.iter().map(settings_key).collect();
            let own: Vec<(u64, u64, bool)> = afters.iter().filter(|a| sent.contains(a)).copied().collect();
            Stream { sent, acked: stream.acked }.assert_audited(&own, &format!("settings of {scope}"));
        }
        let sent: usize = streams.iter().map(|st| st.sent.len()).sum();
        let known = afters.iter().filter(|a| streams.iter().any(|st| st.sent.iter().any(|v| settings_key(v) == **a)));
        assert_eq!(known.count(), afters.len(), "settings of {scope}: audited a value none of {sent} writes sent");
        assert_chained(&audited, &format!("settings of {scope}"));
        let row = stored.iter().find(|r| &r.0 == scope);
        match (afters.last(), row) {
            (Some(after), Some(row)) => {
                let row_key = (row.1 as u64, row.2 as u64, row.3 == 1);
                assert_eq!(*after, row_key, "settings of {scope}: newest audited after differs from the stored row");
            }
            (None, _) => assert!(streams.iter().all(|st| st.acked == 0), "settings of {scope}: nothing audited"),
            (Some(_), None) => panic!("settings of {scope} audited but not stored"),
        }
    }
    let features: Vec<(String, String)> =
        sqlx::query_as("SELECT id, feature_behaviour FROM tenants").fetch_all(&db).await.unwrap();
    for (tenant, streams) in grouped(ledger.features.iter().map(|(t, st)| (t, st))) {
        let audited: Vec<&Event> =
            events.iter().filter(|e| e.action == "tenant_feature.updated" && &e.scope_key == tenant).collect();
        let afters: Vec<String> = audited.iter().map(|e| e.after()["behaviour"].as_str().unwrap().to_owned()).collect();
        match streams.as_slice() {
            [stream] => stream.assert_audited(&afters, &format!("feature of {tenant}")),
            _ => assert_audit_count(&streams, afters.len(), &format!("feature of {tenant}")),
        }
        assert_chained(&audited, &format!("feature of {tenant}"));
        let row = &features.iter().find(|f| &f.0 == tenant).unwrap().1;
        assert_eq!(
            afters.last().unwrap_or(&"optional".to_owned()),
            row,
            "feature of {tenant} differs from its newest event"
        );
    }
    for (user, stream) in &ledger.switches {
        let audited: Vec<&Event> =
            events.iter().filter(|e| e.action == "user.two_factor_set" && e.target == format!("user:{user}")).collect();
        let afters: Vec<bool> = audited.iter().map(|e| e.after()["two_factor_enabled"].as_bool().unwrap()).collect();
        stream.assert_audited(&afters, &format!("2FA switch of {user}"));
        assert_chained(&audited, &format!("2FA switch of {user}"));
        let flag = users.iter().find(|u| &u.0 == user).unwrap().4 == 1;
        assert_eq!(afters.last().copied().unwrap_or(false), flag, "2FA switch of {user} differs from its newest event");
    }

    // Sign-ins: nothing in this scenario ends a session, so each session has its
    // sign_in.succeeded event and each event its session.
    let mut signed_in: HashMap<String, i64> = HashMap::new();
    for e in events.iter().filter(|e| e.action == "sign_in.succeeded") {
        *signed_in.entry(e.target.strip_prefix("user:").unwrap().to_owned()).or_default() += 1;
    }
    let sessions: Vec<(String, i64)> =
        sqlx::query_as("SELECT user_id, COUNT(*) FROM sessions GROUP BY user_id").fetch_all(&db).await.unwrap();
    let sessions: HashMap<String, i64> = sessions.into_iter().collect();
    assert_eq!(sessions, signed_in, "sessions per user and sign_in.succeeded events per user differ");
    db.close().await;
}

/// Resident memory of a process, in MiB.
fn resident_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024.0
}

// ---------------------------------------------------------------- tests

/// The resources of a real process, seen from outside it.
mod process {
    use super::*;

    /// Each password check runs in 19 MiB of argon2 working memory per hashing thread,
    /// the largest holding of the process. A burst of sign-ins reuses it; once the
    /// hashing threads are idle it must leave the process, not stay with the allocator.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn an_idle_server_gives_its_password_hashing_memory_back() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("twofold.db").display());
        let node = Node::start("memory", &node_env(&url, None));
        let pid = node.child.id();
        // Twice: an allocator may hand back the first large block it frees and keep
        // the next ones.
        for round in 1..=2 {
            // Parallel sign-ins, so that every hashing thread checks a password.
            let sign_ins = (0..8).map(|_| async {
                let admin = Person::new();
                admin.sign_in_admin(node.url()).await;
            });
            futures::future::join_all(sign_ins).await;
            let busy = resident_mib(pid);
            // Each hashing thread lets go after 5 s without a password to check.
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut idle = busy;
            while busy - idle < 15.0 {
                assert!(
                    Instant::now() < deadline,
                    "round {round}: resident memory {busy:.1} MiB after the sign-ins, still {idle:.1} MiB 20 s later"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
                idle = resident_mib(pid);
            }
        }
    }
}

mod faults {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_sigkill_mid_burst_keeps_every_acknowledged_write_and_nothing_half_written() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("twofold.db").display());
        kill_mid_burst_and_restart(&url, None).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_sigkill_mid_burst_keeps_every_acknowledged_write_and_nothing_half_written() {
        let cluster = Cluster::start();
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        kill_mid_burst_and_restart(&cluster.url(), Some(key)).await;
    }
}
