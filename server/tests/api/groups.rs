//! Groups with 2FA rules (DESIGN.md section 5) through the HTTP API: resolution with
//! groups wherever the effective policy shows (policy view, sign-in, user list), the
//! impact preview of rule and membership changes, the adoption view and its CSV, the
//! what-if of a user's next sign-in, and who may manage which groups.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::flows::{admin_app, create_user, drop_switch_trigger, now_ms, password_step, set_tenant_settings};
use crate::helpers::{Options, PASSWORD, TestApp};

async fn sql(app: &TestApp, query: &'static str, user_id: &str) {
    sqlx::query(query).bind(user_id).execute(&app.running.state.db().pool).await.expect("update users");
}

/// Locks second-factor sign-in for a day, straight in storage.
async fn lock(app: &TestApp, user_id: &str) {
    sqlx::query("UPDATE users SET locked_until = $1 WHERE id = $2")
        .bind(now_ms(app) + 86_400_000)
        .bind(user_id)
        .execute(&app.running.state.db().pool)
        .await
        .expect("update users");
}

/// An authenticator straight in storage: the adoption view and the policy only ask
/// whether one exists.
async fn give_authenticator(app: &TestApp, user_id: &str) {
    sql(app, "UPDATE users SET has_authenticator = 1 WHERE id = $1", user_id).await;
}

async fn create_group(app: &TestApp, scope: &str, body: Value) -> Value {
    app.post_json(&format!("{scope}/groups"), &body).await.assert_status(StatusCode::CREATED).json()
}

async fn add_member(app: &TestApp, group: &str, user: &str) {
    app.post_json(&format!("/api/groups/{group}/members"), &json!({ "user_id": user }))
        .await
        .assert_status(StatusCode::OK);
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

/// A tenant "acme" with alice (no factor), bob (a confirmed email) and carol (an
/// authenticator), and the path prefix of the tenant.
async fn acme(app: &TestApp) -> (String, [String; 3]) {
    let t = app.create_tenant("acme").await;
    let alice = create_user(app, &t.id, "alice", None).await;
    let bob = create_user(app, &t.id, "bob", Some("bob@acme.test")).await;
    app.give_factor(&bob.id).await;
    let carol = create_user(app, &t.id, "carol", None).await;
    give_authenticator(app, &carol.id).await;
    (format!("/api/tenants/{}", t.id), [alice.id, bob.id, carol.id])
}

fn dev() -> Options {
    // Email codes need a sender to be offered at all.
    Options { dev_senders: true, ..Options::default() }
}

#[tokio::test]
async fn a_requiring_group_decides_names_itself_and_fixes_the_switch() {
    let app = admin_app(dev()).await;
    let (scope, [alice, bob, _]) = acme(&app).await;
    let finance =
        create_group(&app, &scope, json!({ "name": "Finance", "rule": { "require_two_factor": true } })).await;
    assert_eq!(finance["rule"], json!({ "require_two_factor": true, "min_strength": null }));
    let g = id(&finance);

    // Adding alice would make her enrol; the preview says so and saves nothing.
    let preview = app
        .post_json(&format!("/api/groups/{g}/members/preview"), &json!({ "user_id": alice, "member": true }))
        .await
        .assert_status(StatusCode::OK)
        .json();
    assert_eq!(preview["newly_required"], 1, "{preview}");
    assert_eq!(preview["newly_required_without_factor"], 1, "{preview}");
    assert_eq!(app.policy(&alice).await["required"], false);

    add_member(&app, &g, &alice).await;
    add_member(&app, &g, &bob).await;
    let p = app.policy(&alice).await;
    assert_eq!(p["required"], true, "{p}");
    assert_eq!(p["decided_by"], "group");
    assert_eq!(p["decided_by_group"], json!({ "id": g, "name": "Finance" }));
    assert_eq!(p["user_can_change"], false);
    assert_eq!(p["admin_can_override"], false);
    assert_eq!(p["group_rules"][0]["name"], "Finance");
    let trace = p["trace"].to_string();
    assert!(trace.contains("Group \\\"Finance\\\" requires a second factor"), "{trace}");
    assert_eq!(p["summary"], "Your group \"Finance\" requires two-factor sign-in.");

    // Neither the admin nor the user may set a switch that does not decide.
    let refused = app.set_two_factor(&alice, true).await.assert_error(StatusCode::CONFLICT, "not_optional");
    assert!(refused["message"].as_str().unwrap().contains("Finance"), "{refused}");

    // The sign-in follows: alice must enrol, bob is asked for his email code.
    password_step(&app.new_client(), "acme", "alice", "requires_enrollment").await;
    let body = password_step(&app.new_client(), "acme", "bob", "requires_two_factor").await;
    assert_eq!(body["providers"][0]["provider"], "email", "{body}");

    // Leaving the group gives the decision back to the switch.
    app.delete(&format!("/api/groups/{g}/members/{alice}")).await.assert_status(StatusCode::NO_CONTENT);
    assert_eq!(app.policy(&alice).await["decided_by"], "user");
    password_step(&app.new_client(), "acme", "alice", "signed_in").await;
}

#[tokio::test]
async fn disabled_is_never_overridden_and_the_trace_says_by_whom() {
    let app = admin_app(Options::default()).await;
    let (scope, [alice, ..]) = acme(&app).await;
    let tenant_id = scope.trim_start_matches("/api/tenants/").to_owned();
    let g = id(&create_group(&app, &scope, json!({ "name": "Admins", "rule": { "require_two_factor": true } })).await);
    add_member(&app, &g, &alice).await;

    set_tenant_settings(&app, &tenant_id, json!({ "behaviour": "disabled" })).await;
    let p = app.policy(&alice).await;
    assert_eq!(p["required"], false, "{p}");
    assert_eq!(p["decided_by"], "tenant_settings");
    let trace = p["trace"].to_string();
    assert!(trace.contains("disabled by the tenant's settings, which overrides the group's rule"), "{trace}");
    password_step(&app.new_client(), "acme", "alice", "signed_in").await;

    // A forced ceiling keeps the decision; the group is still listed as consulted.
    app.set_feature(&tenant_id, "forced").await;
    let p = app.policy(&alice).await;
    assert_eq!((p["required"].clone(), p["decided_by"].clone()), (json!(true), json!("tenant_feature")), "{p}");
    assert!(p["trace"].to_string().contains("already forced by the host's ceiling"), "{p}");
}

#[tokio::test]
async fn a_required_strength_hides_weaker_factors_and_the_preview_counts_them() {
    let app = admin_app(dev()).await;
    let (scope, [alice, bob, carol]) = acme(&app).await;
    let g = id(&create_group(&app, &scope, json!({ "name": "Treasury" })).await);
    for u in [&alice, &bob, &carol] {
        add_member(&app, &g, u).await;
    }
    let rule = json!({ "require_two_factor": true, "min_strength": "app" });
    let preview = app
        .post_json(&format!("/api/groups/{g}/preview"), &json!({ "rule": rule }))
        .await
        .assert_status(StatusCode::OK)
        .json();
    assert_eq!(preview["users_in_scope"], 3, "{preview}");
    assert_eq!(preview["newly_required"], 3, "{preview}");
    assert_eq!(preview["newly_required_without_factor"], 1, "{preview}");
    // alice has nothing, bob only an emailed code.
    assert_eq!(preview["newly_required_without_strength"], 2, "{preview}");

    app.put_json(&format!("/api/groups/{g}"), &json!({ "name": "Treasury", "rule": rule }))
        .await
        .assert_status(StatusCode::OK);
    let p = app.policy(&bob).await;
    assert_eq!(p["required_strength"], "app", "{p}");
    assert_eq!(p["allowed_providers"], json!({ "authenticator": true, "email": false, "sms": false, "passkey": true }));
    // Bob's email no longer counts: he must enrol an authenticator.
    let body = password_step(&app.new_client(), "acme", "bob", "requires_enrollment").await;
    assert_eq!(body["enrollable"], json!(["authenticator"]), "{body}");
    let what = app.get(&format!("/api/users/{bob}/what-if")).await.assert_status(StatusCode::OK).json();
    assert_eq!(what["status"], "requires_enrollment", "{what}");

    // A strength no provider of the scope reaches would lock members out.
    // The same code a scope gets for a min_strength its providers cannot meet.
    let pr = json!({ "name": "Keys", "rule": { "min_strength": "phishing_resistant" } });
    let e = app
        .post_json(&format!("{scope}/groups"), &pr)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "strength_unreachable");
    assert_eq!(e["field"], "rule.min_strength");
    let groups = app.get(&format!("{scope}/groups")).await.assert_status(StatusCode::OK).json();
    assert!(!groups.to_string().contains("\"Keys\""), "nothing written: {groups}");
}

#[tokio::test]
async fn groups_are_named_once_per_scope_renamed_deleted_and_audited() {
    let app = admin_app(Options::default()).await;
    let (scope, [alice, ..]) = acme(&app).await;
    let g = id(&create_group(&app, &scope, json!({ "name": "  Finance   team " })).await);
    assert_eq!(app.get(&format!("/api/groups/{g}")).await.assert_status(StatusCode::OK).json()["name"], "Finance team");
    app.post_json(&format!("{scope}/groups"), &json!({ "name": "FINANCE TEAM" }))
        .await
        .assert_error(StatusCode::CONFLICT, "name_taken");
    // The same name in the host scope is another group.
    create_group(&app, "/api/host", json!({ "name": "Finance team" })).await;
    for bad in ["", "   ", "a\u{7}b"] {
        app.post_json(&format!("{scope}/groups"), &json!({ "name": bad }))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_field");
    }

    add_member(&app, &g, &alice).await;
    add_member(&app, &g, &alice).await;
    let members = app.get(&format!("/api/groups/{g}/members")).await.assert_status(StatusCode::OK).json();
    assert_eq!(members, json!([{ "user_id": alice, "username": "alice" }]));
    let renamed = app
        .put_json(&format!("/api/groups/{g}"), &json!({ "name": "Payroll", "rule": { "require_two_factor": true } }))
        .await
        .assert_status(StatusCode::OK)
        .json();
    assert_eq!((renamed["name"].clone(), renamed["member_count"].clone()), (json!("Payroll"), json!(1)));
    let list = app.get(&format!("{scope}/groups")).await.assert_status(StatusCode::OK).json();
    assert_eq!(list.as_array().unwrap().len(), 1);

    app.delete(&format!("/api/groups/{g}")).await.assert_status(StatusCode::NO_CONTENT);
    app.get(&format!("/api/groups/{g}")).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(app.policy(&alice).await["decided_by"], "user");

    let tenant_id = scope.trim_start_matches("/api/tenants/");
    let actions: Vec<String> = app
        .audit(&format!("&tenant_id={tenant_id}"))
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .filter(|a| a.starts_with("group."))
        .collect();
    // Newest first; the second add changed nothing and left no event.
    assert_eq!(actions, ["group.deleted", "group.updated", "group.member_added", "group.created"]);
}

#[tokio::test]
async fn members_come_from_the_group_scope_and_tenant_admins_manage_their_own_groups_only() {
    let app = admin_app(Options::default()).await;
    let (scope, [alice, ..]) = acme(&app).await;
    let g = id(&create_group(&app, &scope, json!({ "name": "Ops" })).await);
    let (other, other_admin, other_client) = app.tenant_with_admin("globex", "boss").await;
    let host_user = app.create_host_user("hostie", PASSWORD).await;
    for stranger in [&other_admin.id, &host_user.id] {
        app.post_json(&format!("/api/groups/{g}/members"), &json!({ "user_id": stranger }))
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }

    // globex's admin: their own groups yes, acme's and the host's no.
    let own = format!("/api/tenants/{}/groups", other.id);
    let made = other_client.post_json(&own, &json!({ "name": "Ops" })).await.assert_status(StatusCode::CREATED).json();
    other_client
        .post_json(&format!("/api/groups/{}/members", id(&made)), &json!({ "user_id": other_admin.id }))
        .await
        .assert_status(StatusCode::OK);
    other_client.get(&format!("/api/groups/{g}")).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    other_client.delete(&format!("/api/groups/{g}")).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    other_client
        .post_json(&format!("/api/groups/{g}/members"), &json!({ "user_id": alice }))
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    other_client.get(&format!("{scope}/groups")).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    other_client.get("/api/host/groups").await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    other_client.get(&format!("{scope}/adoption")).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    other_client.get(&format!("/api/users/{alice}/what-if")).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(app.get(&format!("/api/groups/{g}/members")).await.json(), json!([]));
}

#[tokio::test]
async fn the_adoption_view_counts_filters_and_exports() {
    let app = admin_app(dev()).await;
    let (scope, [alice, bob, carol]) = acme(&app).await;
    let g = id(&create_group(&app, &scope, json!({ "name": "Finance", "rule": { "require_two_factor": true } })).await);
    add_member(&app, &g, &alice).await;
    add_member(&app, &g, &bob).await;
    // carol signs in (nothing required of her) and is then locked until an admin unlocks.
    password_step(&app.new_client(), "acme", "carol", "signed_in").await;
    lock(&app, &carol).await;

    let a = app.get(&format!("{scope}/adoption")).await.assert_status(StatusCode::OK).json();
    assert_eq!(
        a["totals"],
        json!({ "users": 3, "with_factor": 2, "with_app_or_stronger": 1, "required": 2, "required_not_ready": 1, "locked": 1 }),
        "{a}"
    );
    let rows = a["users"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "bob", "carol"]);
    assert_eq!(rows[0]["policy"]["decided_by_group"]["name"], "Finance");
    assert_eq!(rows[0]["policy"]["ready"], false);
    assert_eq!(rows[1]["factors"], json!([{ "provider": "email", "strength": "out_of_band" }]));
    assert_eq!(rows[1]["policy"]["ready"], true);
    assert_eq!(rows[2]["last_sign_in_factor"], "password");
    assert!(rows[2]["last_sign_in_at"].is_string(), "{}", rows[2]);
    assert_eq!(rows[2]["lock"]["locked"], true);
    assert_eq!(rows[1]["last_sign_in_at"], Value::Null);

    let only = |q: &str| {
        let app = &app;
        let path = format!("{scope}/adoption?{q}");
        async move {
            let v = app.get(&path).await.assert_status(StatusCode::OK).json();
            v["users"].as_array().unwrap().iter().map(|r| r["user_id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(only("ready=false").await, [alice.as_str()]);
    assert_eq!(only("required=true&ready=true").await, [bob.as_str()]);
    assert_eq!(only("locked=true").await, [carol.as_str()]);
    assert_eq!(only("q=BO").await, [bob.as_str()]);
    app.get(&format!("{scope}/adoption?colour=red")).await.assert_error(StatusCode::BAD_REQUEST, "invalid_query");

    let csv = app.get(&format!("{scope}/adoption.csv?required=true")).await.assert_status(StatusCode::OK);
    assert!(csv.headers["content-type"].to_str().unwrap().starts_with("text/csv"), "{:?}", csv.headers);
    let text = csv.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("username,user_id,required,decided_by,decided_by_group"), "{text}");
    assert!(lines[1].starts_with(&format!("alice,{alice},true,group,Finance,out_of_band,false,")), "{text}");
}

#[tokio::test]
async fn what_if_tells_the_next_sign_in_without_signing_in() {
    let app = admin_app(dev()).await;
    let (scope, [alice, bob, carol]) = acme(&app).await;
    let g = id(&create_group(&app, &scope, json!({ "name": "Finance", "rule": { "require_two_factor": true } })).await);
    add_member(&app, &g, &alice).await;
    add_member(&app, &g, &bob).await;
    let before = app.audit("").await.len();

    let what = |u: String| {
        let app = &app;
        async move { app.get(&format!("/api/users/{u}/what-if")).await.assert_status(StatusCode::OK).json() }
    };
    let a = what(alice.clone()).await;
    assert_eq!(a["status"], "requires_enrollment", "{a}");
    assert!(a["enrollable"].as_array().unwrap().contains(&json!("authenticator")), "{a}");
    assert_eq!(a["policy"]["decided_by"], "group");
    assert!(a["policy"]["trace"].to_string().contains("Finance"), "{a}");
    let b = what(bob.clone()).await;
    assert_eq!(b["status"], "requires_two_factor", "{b}");
    assert_eq!(b["providers"][0]["provider"], "email");
    assert_eq!(what(carol.clone()).await["status"], "signed_in");

    // Nothing happened: no audit event, no sign-in recorded, no enrolment clock started.
    assert_eq!(app.audit("").await.len(), before);
    let adoption = app.get(&format!("{scope}/adoption")).await.json();
    assert!(adoption["users"].as_array().unwrap().iter().all(|r| r["last_sign_in_at"].is_null()), "{adoption}");
}

#[tokio::test]
async fn the_user_list_shows_what_is_required_by_whom_factors_and_lock() {
    let app = admin_app(Options::default()).await;
    let (scope, [alice, bob, carol]) = acme(&app).await;
    let g = id(&create_group(&app, &scope, json!({ "name": "Finance", "rule": { "require_two_factor": true } })).await);
    add_member(&app, &g, &alice).await;
    lock(&app, &carol).await;
    let page = app.get(&format!("{scope}/users")).await.assert_status(StatusCode::OK).json();
    let by = |uid: &str| page["items"].as_array().unwrap().iter().find(|u| u["id"] == uid).cloned().unwrap();
    let a = by(&alice);
    assert_eq!(a["policy"]["required"], true, "{a}");
    assert_eq!(a["policy"]["decided_by_group"]["name"], "Finance");
    assert_eq!(a["factors"], json!([]));
    let b = by(&bob);
    assert_eq!((b["policy"]["required"].clone(), b["policy"]["decided_by"].clone()), (json!(false), json!("user")));
    assert_eq!(b["factors"], json!([{ "provider": "email", "strength": "out_of_band" }]));
    let c = by(&carol);
    assert_eq!(c["lock"]["locked"], true, "{c}");
    assert_eq!(c["factors"], json!([{ "provider": "authenticator", "strength": "app" }]));
}

/// With several requiring groups the first by name decides, compared without case and
/// whatever order they were made or joined in; the user's own policy read, the user
/// list and the group list agree on it.
#[tokio::test]
async fn the_first_requiring_group_by_name_decides_wherever_the_policy_shows() {
    let app = admin_app(Options::default()).await;
    let (scope, [alice, _, _]) = acme(&app).await;
    let rule = json!({ "require_two_factor": true });
    let zeta = id(&create_group(&app, &scope, json!({ "name": "zeta", "rule": rule })).await);
    let beta = id(&create_group(&app, &scope, json!({ "name": "Beta", "rule": rule })).await);
    let alpha = id(&create_group(&app, &scope, json!({ "name": "alpha", "rule": rule })).await);
    for g in [&zeta, &beta, &alpha] {
        add_member(&app, g, &alice).await;
    }
    let p = app.policy(&alice).await;
    assert_eq!(p["decided_by_group"], json!({ "id": alpha, "name": "alpha" }), "{p}");
    let names: Vec<&str> = p["group_rules"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "Beta", "zeta"]);

    let page = app.get(&format!("{scope}/users")).await.assert_status(StatusCode::OK).json();
    let listed = page["items"].as_array().unwrap().iter().find(|u| u["id"] == alice.as_str()).cloned().unwrap();
    assert_eq!(listed["policy"]["decided_by_group"]["name"], "alpha", "{listed}");
    let groups = app.get(&format!("{scope}/groups")).await.assert_status(StatusCode::OK).json();
    let listed: Vec<&str> = groups.as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(listed, ["alpha", "Beta", "zeta"], "{groups}");

    // Leaving "alpha" hands the decision to the next by name.
    app.delete(&format!("/api/groups/{alpha}/members/{alice}")).await.assert_status(StatusCode::NO_CONTENT);
    assert_eq!(app.policy(&alice).await["decided_by_group"]["name"], "Beta");
}

#[tokio::test]
async fn the_database_refuses_a_member_from_another_scope() {
    let app = admin_app(Options::default()).await;
    let (scope, _) = acme(&app).await;
    let g = id(&create_group(&app, &scope, json!({ "name": "Ops" })).await);
    let (_, stranger, _) = app.tenant_with_admin("globex", "boss").await;
    let acme_id = scope.trim_start_matches("/api/tenants/");
    // Claiming the group's scope for a user of another tenant breaks the user's key;
    // claiming the user's scope breaks the group's.
    for claimed in [acme_id, stranger.tenant_id.as_deref().unwrap()] {
        let r = sqlx::query(
            "INSERT INTO user_group_members (group_id, user_id, scope_key, created_at) VALUES ($1, $2, $3, 0)",
        )
        .bind(&g)
        .bind(&stranger.id)
        .bind(claimed)
        .execute(&app.running.state.db().pool)
        .await;
        assert!(r.is_err(), "a member of another scope was stored under {claimed}");
    }
}

#[tokio::test]
async fn scope_previews_count_group_members_as_already_required() {
    let app = admin_app(Options::default()).await;
    let (scope, [alice, ..]) = acme(&app).await;
    let g = id(&create_group(&app, &scope, json!({ "name": "Finance", "rule": { "require_two_factor": true } })).await);
    add_member(&app, &g, &alice).await;
    let forced = crate::helpers::settings_with(json!({ "behaviour": "forced" }));
    let p = app
        .post_json(&format!("{scope}/settings/preview"), &json!({ "settings": forced }))
        .await
        .assert_status(StatusCode::OK)
        .json();
    // bob and carol become required; alice already is, through her group.
    assert_eq!((p["users_in_scope"].clone(), p["newly_required"].clone()), (json!(3), json!(2)), "{p}");
    let disabled = crate::helpers::settings_with(json!({ "behaviour": "disabled" }));
    let p = app
        .post_json(&format!("{scope}/settings/preview"), &json!({ "settings": disabled }))
        .await
        .assert_status(StatusCode::OK)
        .json();
    assert_eq!(p["no_longer_required"], 1, "disabled overrides the group: {p}");
}

#[tokio::test]
async fn the_last_factor_stays_while_a_group_requires_two_factor() {
    let app = admin_app(Options::default()).await;
    let (scope, [alice, ..]) = acme(&app).await;
    let g = id(&create_group(&app, &scope, json!({ "name": "Finance", "rule": { "require_two_factor": true } })).await);
    add_member(&app, &g, &alice).await;
    let client = app.new_client();
    crate::flows::enrol_authenticator(&app, &client, "acme", "alice").await;
    client.delete("/api/account/authenticator").await.assert_error(StatusCode::CONFLICT, "last_factor");
    // Her own switch is not hers to turn off either.
    client
        .put_json("/api/account/two-factor", &json!({ "enabled": false }))
        .await
        .assert_error(StatusCode::CONFLICT, "user_cannot_change");
}

#[tokio::test]
async fn a_remembered_browser_stops_skipping_when_a_group_asks_for_more_than_its_factor() {
    // Passkeys on (a relying party), so that a group may ask for them.
    let app = crate::helpers::TestApp::spawn_configured(Options { manual_clock: true, ..Options::default() }, |c| {
        c.public_url = Some("http://localhost:8443".to_owned());
    })
    .await;
    app.sign_in_admin().await;
    let (scope, [alice, ..]) = acme(&app).await;
    let rule = json!({ "require_two_factor": true, "min_strength": "app" });
    let g = id(&create_group(&app, &scope, json!({ "name": "Treasury", "rule": rule })).await);
    add_member(&app, &g, &alice).await;
    let client = app.new_client();
    let secret = crate::flows::enrol_authenticator(&app, &client, "acme", "alice").await.secret;
    client.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);
    let body = password_step(&client, "acme", "alice", "requires_two_factor").await;
    assert_eq!(body["remember_browser_offered"], true, "{body}");
    // Remembered with an authenticator code: strength `app`, which the group asks for.
    let resp = crate::flows::verify(&client, "authenticator", &crate::flows::next_totp(&app, &secret), true).await;
    crate::flows::assert_signed_in(&resp);
    assert!(crate::flows::cookie_set(&resp, crate::flows::REMEMBER_COOKIE).is_some());
    client.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);
    password_step(&client, "acme", "alice", "signed_in").await;
    client.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);
    // The group now asks for more than the factor the browser was remembered with.
    let stronger = json!({ "require_two_factor": true, "min_strength": "phishing_resistant" });
    app.put_json(&format!("/api/groups/{g}"), &json!({ "name": "Treasury", "rule": stronger }))
        .await
        .assert_status(StatusCode::OK);
    password_step(&client, "acme", "alice", "requires_enrollment").await;
}

/// Polls alice's policy view until `holds`, which it must within a second.
async fn policy_within_a_second(app: &TestApp, user_id: &str, what: &str, holds: impl Fn(&Value) -> bool) {
    let start = std::time::Instant::now();
    loop {
        let view = app.policy(user_id).await;
        if holds(&view) {
            return;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(1), "{what}: not seen after 1 s: {view}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A user's policy inputs stay in the server's memory longer than the half second of
/// the recent rows (`cache`), which is only safe because any change to them, however it
/// is written, is announced by the database's own triggers. Here every change is
/// written behind the server's back, as another process or an operator's statement
/// would: the server never hears of it from its own writes.
#[tokio::test]
async fn policy_inputs_changed_behind_the_servers_back_are_seen_within_a_second() {
    let app = admin_app(Options::default()).await;
    let acme = app.create_tenant("acme").await;
    let alice = create_user(&app, &acme.id, "alice", None).await;
    let pool = &app.running.state.db().pool;
    let view = app.policy(&alice.id).await;
    assert_eq!(
        (view["user_two_factor_enabled"].as_bool(), view["group_rules"].as_array().map(Vec::len)),
        (Some(false), Some(0))
    );

    sql(&app, "UPDATE users SET two_factor_enabled = 1 WHERE id = $1", &alice.id).await;
    policy_within_a_second(&app, &alice.id, "her switch turned on", |v| v["user_two_factor_enabled"] == true).await;

    let group = "7d0c3c1e-5b1a-4d8e-9a55-0f8f2c1d9e01";
    sqlx::query(
        "INSERT INTO user_groups (id, scope_key, name, name_key, require_two_factor, created_at, updated_at) \
         VALUES ($1, $2, 'Finance', 'finance', 1, 0, 0)",
    )
    .bind(group)
    .bind(&acme.id)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO user_group_members (group_id, user_id, scope_key, created_at) VALUES ($1, $2, $3, 0)")
        .bind(group)
        .bind(&alice.id)
        .bind(&acme.id)
        .execute(pool)
        .await
        .unwrap();
    policy_within_a_second(&app, &alice.id, "a group that requires 2FA", |v| {
        v["required"] == true && v["decided_by"] == "group" && v["group_rules"][0]["id"] == group
    })
    .await;
    sqlx::query("UPDATE user_groups SET require_two_factor = 0 WHERE id = $1").bind(group).execute(pool).await.unwrap();
    policy_within_a_second(&app, &alice.id, "the group's rule dropped", |v| v["group_rules"] == json!([])).await;
    sqlx::query("UPDATE user_groups SET require_two_factor = 1 WHERE id = $1").bind(group).execute(pool).await.unwrap();
    policy_within_a_second(&app, &alice.id, "the group's rule back", |v| v["decided_by"] == "group").await;
    sql(&app, "DELETE FROM user_group_members WHERE user_id = $1", &alice.id).await;
    policy_within_a_second(&app, &alice.id, "her membership ended", |v| v["group_rules"] == json!([])).await;

    // The control: without the trigger on her switch, a change to it goes unseen for
    // longer than the recent rows' half second. So the server really serves her
    // inputs from memory, and it was the triggers above that refreshed them.
    drop_switch_trigger(&app).await;
    assert_eq!(app.policy(&alice.id).await["user_two_factor_enabled"], true);
    sql(&app, "UPDATE users SET two_factor_enabled = 0 WHERE id = $1", &alice.id).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(app.policy(&alice.id).await["user_two_factor_enabled"], true, "read again, not from memory");
    // A write of anything through the server (here a new tenant) ends every entry it
    // read before, triggers or not.
    app.create_tenant("beta").await;
    assert_eq!(app.policy(&alice.id).await["user_two_factor_enabled"], false);
}

/// On PostgreSQL the policy reads that miss the cache at the same moment share one
/// statement (`db::batch`). Each answer must still be its own user's: a read handed
/// another user's inputs would show another switch, another tenant or another group.
/// Every user here differs from the next in at least one of those.
#[tokio::test]
async fn policy_reads_at_the_same_moment_each_answer_their_own_user() {
    let app = TestApp::spawn_configured(Options::default(), |c| {
        c.metrics_bind = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    app.sign_in_admin().await;
    let tenants = [app.create_tenant("acme").await.id, app.create_tenant("globex").await.id];
    // The tenants differ in their settings too, so a user answered with the other
    // tenant's inputs shows the other tenant's remembered-browser days.
    set_tenant_settings(&app, &tenants[0], json!({ "remember_browser_days": 7 })).await;
    set_tenant_settings(&app, &tenants[1], json!({ "remember_browser_days": 21 })).await;
    let groups = [
        id(&create_group(
            &app,
            &format!("/api/tenants/{}", tenants[0]),
            json!({ "name": "Ops", "rule": { "require_two_factor": true } }),
        )
        .await),
        id(&create_group(
            &app,
            &format!("/api/tenants/{}", tenants[1]),
            json!({ "name": "Ops", "rule": { "require_two_factor": true } }),
        )
        .await),
    ];
    let mut users = Vec::new();
    for i in 0..24 {
        let tenant = &tenants[i % 2];
        let user = create_user(&app, tenant, &format!("user{i}"), None).await;
        if i % 3 == 0 {
            sql(&app, "UPDATE users SET two_factor_enabled = 1 WHERE id = $1", &user.id).await;
        }
        if i % 4 < 2 {
            add_member(&app, &groups[i % 2], &user.id).await;
        }
        users.push((user.id, tenant.clone(), i % 3 == 0, i % 4 < 2));
    }
    let metrics = app.running.metrics_addr.expect("metrics_bind is set");
    let counters = || async move {
        let text = reqwest::get(format!("http://{metrics}/metrics")).await.unwrap().text().await.unwrap();
        let sum =
            |name: &str| -> f64 { text.lines().filter_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).sum() };
        (sum("twofold_postgres_subject_statement_reads_sum"), sum("twofold_postgres_subject_statement_reads_count"))
    };
    let before = counters().await;
    let unknown = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    for round in 0..3 {
        // A write through the server ends every cached input, so each round misses.
        app.create_tenant(&format!("round{round}")).await;
        // Each user twice (two reads of one id in one statement) and an unknown one.
        let mut reads = tokio::task::JoinSet::new();
        for n in (0..users.len()).chain(0..users.len()).chain([usize::MAX]) {
            let user = users.get(n).map_or(unknown, |u| u.0.as_str());
            let (client, path) = (app.client.clone(), format!("/api/users/{user}/policy"));
            reads.spawn(async move { (n, client.get(&path).await) });
        }
        for (n, resp) in reads.join_all().await {
            let Some((user, tenant, switch, member)) = users.get(n) else {
                resp.assert_error(StatusCode::NOT_FOUND, "not_found");
                continue;
            };
            let view = resp.assert_status(StatusCode::OK).json();
            assert_eq!(view["user_id"], json!(user), "round {round}: {view}");
            let days = if tenant == &tenants[0] { 7 } else { 21 };
            assert_eq!(view["remember_browser_days"], json!(days), "round {round}, {user}: {view}");
            assert_eq!(view["user_two_factor_enabled"], json!(switch), "round {round}, {user}: {view}");
            let rules: Vec<&str> =
                view["group_rules"].as_array().unwrap().iter().filter_map(|r| r["id"].as_str()).collect();
            let expected: Vec<&str> = if *member { vec![groups[n % 2].as_str()] } else { vec![] };
            assert_eq!(rules, expected, "round {round}, {user}: {view}");
        }
    }
    let after = counters().await;
    if crate::helpers::Backend::from_env() == crate::helpers::Backend::Postgres {
        // Every statement answers at least one read, so reads outrun statements only
        // where one statement answered several.
        assert!(after.0 - before.0 >= 48.0, "{before:?} -> {after:?}");
        assert!(after.0 - after.1 > before.0 - before.1, "no statement answered two reads: {before:?} -> {after:?}");
    } else {
        assert_eq!(after, (0.0, 0.0), "no shared statements on SQLite");
    }
}
