//! Rotating `secret_key`: what was written under the old key keeps working while it is
//! listed in `previous_secret_keys` (authenticator secrets, recovery codes, remembered
//! browsers), `twofold rotate-secrets` rewrites the stored ciphertexts in small
//! transactions, survives a SIGKILL in the middle and finishes when run again, and
//! afterwards the old key can go. On SQLite and on PostgreSQL (`TEST_BACKEND`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use base64::Engine;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::json;
use twofold_server::secrets::Keys;

use crate::flows::{
    REMEMBER_COOKIE, advance_seconds, assert_signed_in, cookie_set, create_user, enrol_authenticator, forced_tenant,
    next_totp, password_step, post_with_cookie, sign_in_with_totp, verify,
};
use crate::helpers::{Options, PASSWORD, TestApp};

const OLD: [u8; 32] = [0xA1; 32];
const NEW: [u8; 32] = [0xB2; 32];
/// Authenticators seeded straight into storage, besides alice's enrolled one.
const SEEDED: usize = 12;

fn b64(key: [u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// An app over `database_url` (or a fresh database) with `secret_key` = `current` and
/// `previous` accepted for reading, its manual clock `hours` ahead: past every time step
/// an earlier app used (a step works once).
async fn app_with_keys(database_url: Option<&str>, current: [u8; 32], previous: &[[u8; 32]], hours: i64) -> TestApp {
    let url = database_url.map(str::to_owned);
    let previous: Vec<SecretString> = previous.iter().map(|k| SecretString::from(b64(*k))).collect();
    let app = TestApp::spawn_configured(Options { manual_clock: true, ..Options::default() }, |c| {
        if let Some(url) = url {
            c.database_url = url;
        }
        c.secret_key = Some(SecretString::from(b64(current)));
        c.previous_secret_keys = previous;
    })
    .await;
    advance_seconds(&app, hours * 3600);
    app.sign_in_admin().await;
    app
}

fn rotate_command(app: &TestApp, current: [u8; 32], previous: &[[u8; 32]]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twofold"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TWOFOLD_") {
            cmd.env_remove(key);
        }
    }
    let previous: Vec<String> = previous.iter().map(|k| format!("\"{}\"", b64(*k))).collect();
    cmd.arg("rotate-secrets")
        .env("TWOFOLD_DATABASE_URL", &app.running.state.config().database_url)
        .env("TWOFOLD_SECRET_KEY", b64(current))
        .env("TWOFOLD_PREVIOUS_SECRET_KEYS", format!("[{}]", previous.join(",")));
    cmd
}

/// Stored authenticator secrets, by user id.
async fn stored_secrets(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as("SELECT user_id, secret_enc FROM authenticators ORDER BY user_id")
        .fetch_all(&app.running.state.db().pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn rotation_keeps_everything_working_survives_a_kill_and_lets_the_old_key_go() {
    // Under the old key: alice enrols an authenticator (with recovery codes) and has a
    // remembered browser; more users' secrets are seeded in storage.
    let old_app = app_with_keys(None, OLD, &[], 1).await;
    let tenant = forced_tenant(&old_app, "acme").await;
    create_user(&old_app, &tenant.id, "alice", None).await;
    let enrolled = enrol_authenticator(&old_app, &old_app.new_client(), "acme", "alice").await;
    let browser = old_app.new_client();
    password_step(&browser, "acme", "alice", "requires_two_factor").await;
    let resp = browser
        .post_json(
            "/api/auth/sign-in/verify",
            &json!({ "method": "authenticator", "code": next_totp(&old_app, &enrolled.secret), "remember_browser": true }),
        )
        .await;
    assert_signed_in(&resp);
    let remember = cookie_set(&resp, REMEMBER_COOKIE).expect("a remember cookie");

    let old_keys = Keys::from_bytes(OLD);
    let mut plain = std::collections::BTreeMap::new();
    for i in 0..SEEDED {
        let user = create_user(&old_app, &tenant.id, &format!("seeded{i:02}"), None).await;
        let secret = format!("seeded secret {i:02}").into_bytes();
        sqlx::query(
            "INSERT INTO authenticators (user_id, secret_enc, confirmed, last_used_step, created_at) \
             VALUES ($1, $2, 1, 0, 0)",
        )
        .bind(&user.id)
        .bind(old_keys.encrypt_secret(&secret, &user.id))
        .execute(&old_app.running.state.db().pool)
        .await
        .unwrap();
        plain.insert(user.id, secret);
    }
    // The OpenID Connect signing keys, made (and stored encrypted) on first use.
    old_app.get("/oauth2/jwks").await.assert_status(StatusCode::OK);
    let signing_keys: Vec<(String, String)> = sqlx::query_as("SELECT kid, private_key FROM oidc_signing_keys")
        .fetch_all(&old_app.running.state.db().pool)
        .await
        .unwrap();
    assert!(!signing_keys.is_empty());
    // A passkey stored under the old key (its content is opaque to rotation).
    let passkey_id = "0193a5b0-0000-7000-8000-000000000001";
    let passkey_plain = b"{\"cred\":\"seeded passkey\"}".to_vec();
    let first_seeded = plain.keys().next().expect("seeded users").clone();
    sqlx::query(
        "INSERT INTO passkeys (id, user_id, credential_id, passkey_enc, name, aaguid, sign_count, backup_eligible, \
         backup_state, created_at) VALUES ($1, $2, 'seeded-credential', $3, 'Seeded', '', 0, 0, 0, 0)",
    )
    .bind(passkey_id)
    .bind(&first_seeded)
    .bind(old_keys.encrypt_secret(&passkey_plain, passkey_id))
    .execute(&old_app.running.state.db().pool)
    .await
    .unwrap();
    let url = old_app.running.state.config().database_url.clone();

    // The new key is current, the old one only read: everything made under it works.
    let app = app_with_keys(Some(&url), NEW, &[OLD], 2).await;
    let new_id = Keys::from_bytes(NEW).current_id().to_owned();
    let remembered = post_with_cookie(
        app.running.addr,
        "/api/auth/sign-in",
        &format!("{REMEMBER_COOKIE}={remember}"),
        &json!({ "tenant": "acme", "username": "alice", "password": PASSWORD }),
    )
    .await;
    assert_signed_in(&remembered);
    assert_signed_in(&sign_in_with_totp(&app, &app.new_client(), "acme", "alice", &enrolled.secret, false).await);
    let client = app.new_client();
    password_step(&client, "acme", "alice", "requires_two_factor").await;
    assert_signed_in(&verify(&client, "recovery_code", &enrolled.recovery_codes[0], false).await);
    assert!(stored_secrets(&app).await.iter().all(|(_, s)| !s.starts_with(&format!("v2:{new_id}:"))));

    // A slow rotation, killed after its second batch: what it committed is rewritten,
    // the rest is untouched, and nothing is half-written.
    let mut child = rotate_command(&app, NEW, &[OLD])
        .args(["--batch-size", "1", "--pause-ms", "400"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let line = lines.next().expect("a progress line").unwrap();
        assert!(line.starts_with("authenticators: rewrote 1 in this batch"), "{line}");
    }
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());

    let both = Keys::from_bytes(NEW).with_previous(&[OLD]).unwrap();
    let after_kill = stored_secrets(&app).await;
    let rewritten = after_kill.iter().filter(|(_, s)| s.starts_with(&format!("v2:{new_id}:"))).count();
    assert!((2..after_kill.len()).contains(&rewritten), "{rewritten} of {} rewritten", after_kill.len());
    for (user_id, stored) in &after_kill {
        let opened = both.decrypt_secret(stored, user_id).expect("every stored secret opens");
        if let Some(expected) = plain.get(user_id) {
            assert_eq!(opened.as_slice(), expected.as_slice());
        }
    }

    // Run again: it finishes the rest, and a third run has nothing left to do.
    let out = rotate_command(&app, NEW, &[OLD]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let remaining = after_kill.len() - rewritten;
    assert!(
        stdout.contains(&format!(
            "authenticators: {remaining} rewritten under key {new_id}, 0 changed meanwhile, 0 unreadable"
        )),
        "{stdout}"
    );
    // Alice used one of her ten recovery codes above.
    assert!(stdout.contains("9 unused recovery codes are hashed under a previous key"), "{stdout}");
    assert!(stdout.contains("rotation complete"), "{stdout}");
    assert!(
        stdout.contains(&format!("oidc_signing_keys: {} rewritten under key {new_id}", signing_keys.len())),
        "{stdout}"
    );
    let only_new_keys = Keys::from_bytes(NEW);
    for (kid, _) in &signing_keys {
        let stored: String = sqlx::query_scalar("SELECT private_key FROM oidc_signing_keys WHERE kid = $1")
            .bind(kid)
            .fetch_one(&app.running.state.db().pool)
            .await
            .unwrap();
        only_new_keys.decrypt_secret(&stored, &format!("oidc-signing-key:{kid}")).expect("rewritten under the new key");
    }
    assert!(stdout.contains(&format!("passkeys: 1 rewritten under key {new_id}")), "{stdout}");
    let stored: String = sqlx::query_scalar("SELECT passkey_enc FROM passkeys WHERE id = $1")
        .bind(passkey_id)
        .fetch_one(&app.running.state.db().pool)
        .await
        .unwrap();
    let opened = only_new_keys.decrypt_secret(&stored, passkey_id).expect("rewritten under the new key");
    assert_eq!(opened.as_slice(), passkey_plain.as_slice());
    let again = rotate_command(&app, NEW, &[OLD]).output().unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("authenticators: 0 rewritten"), "{again:?}");
    for (user_id, stored) in stored_secrets(&app).await {
        assert!(stored.starts_with(&format!("v2:{new_id}:")), "{user_id}");
    }
    let rotations = app.audit("").await.into_iter().filter(|e| e["action"] == "secrets.rotated").count();
    assert_eq!(rotations, 2);

    // Without the old key: the rewritten authenticator still works; what could only be
    // signed or hashed under the old key (the remembered browser, the old recovery
    // codes) no longer does, which is why the key stays listed until those expire.
    let only_new = app_with_keys(Some(&url), NEW, &[], 3).await;
    assert_signed_in(
        &sign_in_with_totp(&only_new, &only_new.new_client(), "acme", "alice", &enrolled.secret, false).await,
    );
    let forgotten = post_with_cookie(
        only_new.running.addr,
        "/api/auth/sign-in",
        &format!("{REMEMBER_COOKIE}={remember}"),
        &json!({ "tenant": "acme", "username": "alice", "password": PASSWORD }),
    )
    .await
    .assert_status(StatusCode::OK);
    assert_eq!(forgotten.json()["status"], "requires_two_factor", "{}", forgotten.text());
    let client = only_new.new_client();
    password_step(&client, "acme", "alice", "requires_two_factor").await;
    let refused = verify(&client, "recovery_code", &enrolled.recovery_codes[1], false).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text());

    // A secret under a key nobody configured any more is reported by id and fails the
    // run, never silently skipped.
    let stray = Keys::from_bytes([0xC3; 32]).encrypt_secret(b"lost", "nobody");
    let first_user = &plain.keys().next().unwrap().clone();
    sqlx::query("UPDATE authenticators SET secret_enc = $1 WHERE user_id = $2")
        .bind(&stray)
        .bind(first_user)
        .execute(&only_new.running.state.db().pool)
        .await
        .unwrap();
    let out = rotate_command(&only_new, NEW, &[OLD]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains(&format!("unreadable: authenticators {first_user}")), "{stdout}");
    assert!(!stdout.contains(&stray) && !stdout.contains("lost"), "{stdout}");
}
