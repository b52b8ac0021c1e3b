//! The OpenID Connect provider, driven by a real relying party (the `openidconnect`
//! crate): discovery, the code flow with PKCE, ID tokens verified through the JWKS
//! (nonce, at_hash), refresh with rotation and reuse detection, userinfo, logout; and
//! the attacks a provider must refuse, each written as the attacker would try it.
//!
//! The browser is a reqwest client that keeps cookies and does not follow redirects,
//! so each hop (the client's redirect URI, the web app's `/sign-in?request=`) is seen.

use openidconnect::core::{
    CoreClient, CoreIdTokenVerifier, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreResponseType,
    CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, Scope, TokenResponse,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp};

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const LOGOUT_RETURN: &str = "http://127.0.0.1:9/signed-out";

type Rp = openidconnect::Client<
    openidconnect::EmptyAdditionalClaims,
    openidconnect::core::CoreAuthDisplay,
    openidconnect::core::CoreGenderClaim,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    openidconnect::core::CoreAuthPrompt,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    openidconnect::core::CoreTokenResponse,
    openidconnect::core::CoreTokenIntrospectionResponse,
    openidconnect::core::CoreRevocableToken,
    openidconnect::core::CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A browser: cookies kept, redirects shown rather than followed.
struct Browser {
    http: reqwest::Client,
    base: String,
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client");
        Browser { http, base: format!("http://{}", app.running.addr) }
    }

    /// Follows a URL and returns where it sends the browser.
    async fn location(&self, url: &str) -> String {
        let resp = self.http.get(url).send().await.expect("request");
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{url}: {}", resp.text().await.unwrap_or_default());
        resp.headers()["location"].to_str().expect("ASCII").to_owned()
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("X-Requested-With", "test")
            .json(body)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn sign_in(&self, tenant: Option<&str>, username: &str) {
        let mut body = json!({ "username": username, "password": PASSWORD });
        if let Some(t) = tenant {
            body["tenant"] = json!(t);
        }
        let (status, body) = self.post("/api/auth/sign-in", &body).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "signed_in", "{body}");
    }

    /// The account page's list of the user's grants.
    async fn grants(&self) -> Value {
        let resp = self.http.get(format!("{}/api/account/applications", self.base)).send().await.expect("request");
        resp.json().await.expect("JSON")
    }

    /// Revokes grant `id` from the account page.
    async fn revoke_grant(&self, id: &str) {
        let resp = self
            .http
            .delete(format!("{}/api/account/applications/{id}", self.base))
            .header("X-Requested-With", "test")
            .send()
            .await
            .expect("request");
        let status = resp.status();
        assert_eq!(status, StatusCode::NO_CONTENT, "{}", resp.text().await.unwrap_or_default());
    }

    /// The web app's part: resume a parked request after signing in.
    async fn resume(&self, handle: &str) -> Value {
        let (status, body) = self.post(&format!("/api/oidc/requests/{handle}"), &json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    reqwest::Url::parse(url).expect("a URL").query_pairs().into_owned().collect()
}

/// A tenant with a user and an application of that tenant (confidential unless
/// `public`), registered through the admin API.
struct Setup {
    app: TestApp,
    tenant: String,
    client_id: String,
    client_secret: Option<String>,
    issuer: String,
}

async fn setup(public: bool, extra: Value) -> Setup {
    setup_on(TestApp::spawn_as_admin().await, public, extra).await
}

/// [`setup`] on an app the test spawned itself (with the admin signed in).
async fn setup_on(app: TestApp, public: bool, extra: Value) -> Setup {
    let t = app.create_tenant("acme").await;
    app.create_tenant_user(&t.id, "alice", PASSWORD).await;
    let mut input = json!({
        "name": "Wiki",
        "client_type": if public { "public" } else { "confidential" },
        "redirect_uris": [REDIRECT],
        "post_logout_redirect_uris": [LOGOUT_RETURN],
        "allowed_scopes": ["openid", "profile", "email", "offline_access"],
        "first_party": true,
    });
    for (k, v) in extra.as_object().expect("an object") {
        input[k] = v.clone();
    }
    let created = app.post_json(&format!("/api/tenants/{}/applications", t.id), &input).await;
    let created = created.assert_status(StatusCode::CREATED).json();
    let issuer = created["application"]["issuer"].as_str().expect("issuer").to_owned();
    assert_eq!(issuer, format!("http://{}/t/acme", app.running.addr));
    Setup {
        client_id: created["application"]["client_id"].as_str().expect("client_id").to_owned(),
        client_secret: created["client_secret"].as_str().map(str::to_owned),
        tenant: t.id,
        issuer,
        app,
    }
}

fn rp_http() -> openidconnect::reqwest::Client {
    openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

async fn relying_party(s: &Setup) -> (Rp, CoreProviderMetadata) {
    let issuer = IssuerUrl::new(s.issuer.clone()).expect("issuer URL");
    let metadata = CoreProviderMetadata::discover_async(issuer, &rp_http()).await.expect("discovery");
    let client = CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(s.client_id.clone()),
        s.client_secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.to_owned()).expect("redirect URL"));
    (client, metadata)
}

/// Starts the code flow with PKCE and a nonce; returns the authorization URL and what
/// the RP keeps.
fn start(rp: &Rp, scopes: &[&str]) -> (String, CsrfToken, Nonce, PkceCodeVerifier) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = rp.authorize_url(
        AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for s in scopes {
        req = req.add_scope(Scope::new((*s).to_owned()));
    }
    let (url, csrf, nonce) = req.set_pkce_challenge(challenge).url();
    (url.to_string(), csrf, nonce, verifier)
}

/// The browser goes through the authorization endpoint (signing in through the web
/// app's hook when asked) and comes back to the RP with a code.
async fn code_via_browser(s: &Setup, browser: &Browser, auth_url: &str, csrf: &CsrfToken) -> String {
    let mut location = browser.location(auth_url).await;
    let signin = format!("http://{}/sign-in?request=", s.app.running.addr);
    if let Some(handle) = location.strip_prefix(&signin).map(str::to_owned) {
        let state = browser.http.get(format!("{}/api/oidc/requests/{handle}", browser.base)).send().await.unwrap();
        let state: Value = state.json().await.unwrap();
        assert_eq!(state["next"], "sign_in", "{state}");
        assert_eq!(state["tenant"], "acme", "the tenant issuer names its tenant: {state}");
        browser.sign_in(Some("acme"), "alice").await;
        let resumed = browser.resume(&handle).await;
        assert_eq!(resumed["next"], "redirect", "{resumed}");
        location = resumed["redirect_to"].as_str().expect("redirect_to").to_owned();
    }
    assert!(location.starts_with(REDIRECT), "{location}");
    let q = query_of(&location);
    assert_eq!(q.get("state"), Some(csrf.secret()), "{location}");
    // RFC 9207: the response names its issuer.
    assert_eq!(q.get("iss"), Some(&s.issuer), "{location}");
    q.get("code").unwrap_or_else(|| panic!("no code in {location}")).clone()
}

async fn raw_token(s: &Setup, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let resp = rp_http().post(format!("{}/oauth2/token", s.issuer)).form(form).send().await.expect("token request");
    let status = resp.status();
    (status, resp.json().await.expect("JSON"))
}

#[tokio::test]
async fn a_relying_party_signs_in_refreshes_reads_userinfo_and_logs_out() {
    let s = setup(false, json!({})).await;
    let (rp, metadata) = relying_party(&s).await;
    assert_eq!(metadata.issuer().as_str(), s.issuer);
    let browser = Browser::new(&s.app);
    let (url, csrf, nonce, verifier) = start(&rp, &["profile", "offline_access"]);
    let code = code_via_browser(&s, &browser, &url, &csrf).await;

    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&rp_http())
        .await
        .expect("code exchange");
    let id_token = tokens.id_token().expect("an ID token");
    let id_verifier: CoreIdTokenVerifier<'_> = rp.id_token_verifier();
    let claims = id_token.claims(&id_verifier, &nonce).expect("ID token verified through the JWKS, with its nonce");
    let expected_hash = claims.access_token_hash().expect("at_hash");
    let actual = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().expect("alg"),
        id_token.signing_key(&id_verifier).expect("key"),
    )
    .expect("hash");
    assert_eq!(&actual, expected_hash);
    assert_eq!(*id_token.signing_alg().unwrap(), CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256);
    assert_eq!(claims.preferred_username().map(|u| u.as_str()), Some("alice"));
    let amr: Vec<String> = claims.auth_method_refs().unwrap().iter().map(|a| a.as_str().to_owned()).collect();
    assert_eq!(amr, ["pwd"]);
    assert_eq!(claims.auth_context_ref().unwrap().as_str(), "urn:twofold:acr:pwd");
    assert!(claims.auth_time().is_some());
    let sub = claims.subject().as_str().to_owned();

    // userinfo with the access token.
    let info: CoreUserInfoClaims = rp
        .user_info(tokens.access_token().to_owned(), None)
        .expect("userinfo endpoint")
        .request_async(&rp_http())
        .await
        .expect("userinfo");
    assert_eq!(info.subject().as_str(), sub);

    // Refresh with rotation: a new refresh token each time, the old one dead.
    let first_refresh = tokens.refresh_token().expect("offline_access gives a refresh token").clone();
    let refreshed = rp
        .exchange_refresh_token(&first_refresh)
        .expect("token endpoint")
        .request_async(&rp_http())
        .await
        .expect("refresh");
    let second_refresh = refreshed.refresh_token().expect("a rotated refresh token").clone();
    assert_ne!(second_refresh.secret(), first_refresh.secret());
    let refreshed_id = refreshed.id_token().expect("an ID token on refresh");
    let again = refreshed_id.claims(&id_verifier, |_: Option<&Nonce>| Ok(())).expect("refreshed ID token verifies");
    assert_eq!(again.subject().as_str(), sub);
    let third = rp.exchange_refresh_token(&second_refresh).unwrap().request_async(&rp_http()).await.expect("refresh 2");

    // RP-initiated logout with the ID token as hint returns exactly where registered.
    let end = metadata_end_session(&s).await;
    let logout =
        format!("{end}?id_token_hint={}&post_logout_redirect_uri={}&state=bye", id_token, urlencode(LOGOUT_RETURN));
    let back = browser.location(&logout).await;
    assert_eq!(back, format!("{LOGOUT_RETURN}?state=bye"));
    let me = browser.http.get(format!("{}/api/auth/me", browser.base)).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED, "the Twofold session ended");
    // Tokens already issued stay valid until they expire or the grant is revoked.
    let _ = third;
}

/// Whether userinfo accepts the access token.
async fn userinfo_ok(rp: &Rp, token: openidconnect::AccessToken) -> bool {
    let answer: Result<CoreUserInfoClaims, _> = rp.user_info(token, None).unwrap().request_async(&rp_http()).await;
    answer.is_ok()
}

async fn metadata_end_session(s: &Setup) -> String {
    let doc: Value = rp_http()
        .get(format!("{}/.well-known/openid-configuration", s.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    doc["end_session_endpoint"].as_str().expect("end_session_endpoint").to_owned()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Signs in and exchanges a code; returns the token answer as JSON.
async fn signed_in_tokens(s: &Setup, rp: &Rp, scopes: &[&str]) -> Value {
    let browser = Browser::new(&s.app);
    let (url, csrf, _nonce, verifier) = start(rp, scopes);
    let code = code_via_browser(s, &browser, &url, &csrf).await;
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.secret().as_str()),
        ("client_id", s.client_id.as_str()),
    ];
    if let Some(secret) = &s.client_secret {
        form.push(("client_secret", secret.as_str()));
    }
    let (status, body) = raw_token(s, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_its_whole_family() {
    let s = setup(false, json!({})).await;
    let (rp, _) = relying_party(&s).await;
    let tokens = signed_in_tokens(&s, &rp, &["offline_access"]).await;
    let r1 = RefreshToken::new(tokens["refresh_token"].as_str().unwrap().to_owned());
    let next = rp.exchange_refresh_token(&r1).unwrap().request_async(&rp_http()).await.expect("first refresh");
    let r2 = next.refresh_token().unwrap().clone();
    // An attacker replays the first refresh token: refused, and the family dies...
    let replay = rp.exchange_refresh_token(&r1).unwrap().request_async(&rp_http()).await;
    assert!(replay.is_err(), "a used refresh token must not work twice");
    // ... so the rightful holder's current token fails too, and so does the access token.
    let rightful = rp.exchange_refresh_token(&r2).unwrap().request_async(&rp_http()).await;
    assert!(rightful.is_err(), "reuse revokes the family");
    assert!(!userinfo_ok(&rp, next.access_token().to_owned()).await, "the family's access tokens stop working");
    let audit = s.app.audit("").await;
    assert!(audit.iter().any(|e| e["action"] == "oidc.refresh_reused"), "audited");
}

#[tokio::test]
async fn a_public_client_must_use_pkce_and_plain_is_refused() {
    let s = setup(true, json!({})).await;
    let browser = Browser::new(&s.app);
    browser.sign_in(Some("acme"), "alice").await;
    let base = format!(
        "{}/oauth2/authorize?response_type=code&scope=openid&client_id={}&redirect_uri={}&state=s1",
        s.issuer,
        s.client_id,
        urlencode(REDIRECT)
    );
    // No PKCE from a public client: an error at the client's redirect URI.
    let q = query_of(&browser.location(&base).await);
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(q["state"], "s1");
    assert_eq!(q["iss"], s.issuer);
    // The plain method (or none, which means plain) is a downgrade: refused.
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    for method in ["&code_challenge_method=plain", ""] {
        let q = query_of(&browser.location(&format!("{base}&code_challenge={challenge}{method}")).await);
        assert_eq!(q["error"], "invalid_request", "{method}");
    }
    // S256 works, and the code then needs the verifier.
    let q = query_of(&browser.location(&format!("{base}&code_challenge={challenge}&code_challenge_method=S256")).await);
    let code = q["code"].clone();
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", s.client_id.as_str()),
    ];
    let (status, body) = raw_token(&s, &form).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "no verifier");
    form.push(("code_verifier", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
    // The failed attempt did not spend the code... but it was a code with a challenge,
    // so only the right verifier redeems it.
    let (status, body) = raw_token(&s, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_verifier_for_a_code_issued_without_a_challenge_is_a_downgrade() {
    let s = setup(false, json!({})).await;
    let browser = Browser::new(&s.app);
    browser.sign_in(Some("acme"), "alice").await;
    let url = format!(
        "{}/oauth2/authorize?response_type=code&scope=openid&client_id={}&redirect_uri={}",
        s.issuer,
        s.client_id,
        urlencode(REDIRECT)
    );
    let code = query_of(&browser.location(&url).await)["code"].clone();
    let secret = s.client_secret.clone().unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", s.client_id.as_str()),
        ("client_secret", secret.as_str()),
        ("code_verifier", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
    ];
    let (status, body) = raw_token(&s, &form).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
}

#[tokio::test]
async fn an_unregistered_redirect_uri_is_never_redirected_to() {
    let s = setup(false, json!({})).await;
    let browser = Browser::new(&s.app);
    browser.sign_in(Some("acme"), "alice").await;
    for evil in [
        "https://evil.example/cb",
        "http://127.0.0.1:9/callback/",
        "http://127.0.0.1:9/callback?x=1",
        "http://127.0.0.1:9/CALLBACK",
    ] {
        let url = format!(
            "{}/oauth2/authorize?response_type=code&scope=openid&client_id={}&redirect_uri={}&state=x",
            s.issuer,
            s.client_id,
            urlencode(evil)
        );
        let resp = browser.http.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{evil}");
        assert!(resp.headers().get("location").is_none(), "{evil}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{evil}");
    }
    // An unknown client is not redirected either.
    let url = format!(
        "{}/oauth2/authorize?response_type=code&scope=openid&client_id=00000000-0000-7000-8000-000000000000&redirect_uri={}",
        s.issuer,
        urlencode(REDIRECT)
    );
    let resp = browser.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().get("location").is_none());
}

#[tokio::test]
async fn a_repeated_parameter_is_refused_and_never_redirected() {
    // Parameter pollution: with two values, which one the provider checks and which one
    // it uses could differ. Any parameter given twice is refused before anything else.
    let s = setup(false, json!({})).await;
    let browser = Browser::new(&s.app);
    browser.sign_in(Some("acme"), "alice").await;
    let base = format!(
        "{}/oauth2/authorize?response_type=code&scope=openid&client_id={}&redirect_uri={}&state=x\
         &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        s.issuer,
        s.client_id,
        urlencode(REDIRECT)
    );
    for extra in ["&redirect_uri=https%3A%2F%2Fevil.example%2Fcb", "&client_id=x", "&state=y", "&scope=openid"] {
        let resp = browser.http.get(format!("{base}{extra}")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{extra}");
        assert!(resp.headers().get("location").is_none(), "{extra}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{extra}: {body}");
    }
    // The same request once each gets its code.
    assert!(browser.location(&base).await.starts_with(REDIRECT));
}

/// A confidential client's code for `offline_access`, and the token request that
/// exchanges it, as `(rp, [code, secret, verifier])` for [`code_form`].
async fn offline_code(s: &Setup) -> (Rp, [String; 3]) {
    let (rp, _, parts) = offline_code_in_browser(s).await;
    (rp, parts)
}

/// [`offline_code`] with the browser that got it, signed in as alice.
async fn offline_code_in_browser(s: &Setup) -> (Rp, Browser, [String; 3]) {
    let (rp, _) = relying_party(s).await;
    let browser = Browser::new(&s.app);
    let (url, csrf, _nonce, verifier) = start(&rp, &["offline_access"]);
    let code = code_via_browser(s, &browser, &url, &csrf).await;
    (rp, browser, [code, s.client_secret.clone().unwrap(), verifier.secret().clone()])
}

/// The admin resets alice's second factors, which rotates her security stamp.
async fn reset_second_factors_of_alice(s: &Setup) {
    let alice = alice_id(s).await;
    s.app
        .post_json(&format!("/api/users/{alice}/reset-second-factors"), &json!({}))
        .await
        .assert_status(StatusCode::NO_CONTENT);
}

fn tokens_issued(events: &[Value]) -> usize {
    events.iter().filter(|e| e["action"] == "oidc.token_issued").count()
}

#[tokio::test]
async fn a_code_whose_grant_was_revoked_before_the_exchange_is_refused() {
    let s = setup(false, json!({})).await;
    let (_, browser, parts) = offline_code_in_browser(&s).await;
    let grant = browser.grants().await["items"][0]["id"].as_str().expect("a grant").to_owned();
    browser.revoke_grant(&grant).await;
    let (status, body) = raw_token(&s, &code_form(&s, &parts)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    assert_eq!(tokens_issued(&s.app.audit("").await), 0);
}

/// The rows an exchange leaves for the setup's application: the spent code (kept
/// against replay), token families, refresh tokens.
async fn rows_of_the_application(s: &Setup) -> [i64; 3] {
    let pool = &s.app.running.state.db().pool;
    let mut counts = [0; 3];
    for (count, table) in
        counts.iter_mut().zip(["oidc_authorization_codes", "oidc_token_families", "oidc_refresh_tokens"])
    {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE application_id = $1");
        let (n,): (i64,) =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(&s.client_id).fetch_one(pool).await.expect("a count");
        *count = n;
    }
    counts
}

#[tokio::test]
async fn what_a_code_gave_goes_with_its_grant_its_user_or_its_application() {
    for removed in ["grant", "user", "application"] {
        let s = setup(false, json!({})).await;
        let (_, browser, parts) = offline_code_in_browser(&s).await;
        let (status, body) = raw_token(&s, &code_form(&s, &parts)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(rows_of_the_application(&s).await, [1, 1, 1], "before the {removed} went");
        match removed {
            "grant" => {
                let grant = browser.grants().await["items"][0]["id"].as_str().expect("a grant").to_owned();
                browser.revoke_grant(&grant).await;
            }
            "user" => {
                let alice = alice_id(&s).await;
                s.app.delete(&format!("/api/users/{alice}")).await.assert_status(StatusCode::NO_CONTENT);
            }
            _ => {
                s.app.delete(&format!("/api/applications/{}", s.client_id)).await.assert_status(StatusCode::NO_CONTENT);
            }
        }
        assert_eq!(rows_of_the_application(&s).await, [0, 0, 0], "after the {removed} went");
    }
}

/// `n` codes for the setup's client with `offline_access`, each `[code, secret,
/// verifier]`, asked in one browser: all under one grant.
async fn offline_codes_in_one_browser(s: &Setup, browser: &Browser, n: usize) -> Vec<[String; 3]> {
    let (rp, _) = relying_party(s).await;
    let mut codes = Vec::new();
    for _ in 0..n {
        let (url, csrf, _nonce, verifier) = start(&rp, &["offline_access"]);
        let code = code_via_browser(s, browser, &url, &csrf).await;
        codes.push([code, s.client_secret.clone().expect("confidential"), verifier.secret().clone()]);
    }
    codes
}

/// Sends `forms` to the token endpoint all at once while `browser` revokes its one
/// grant; each is refused, or gave a refresh token that is refused once the revocation
/// is done, and nothing of the application's tokens is left.
async fn race_the_revocation_of_the_grant(s: &Setup, browser: &Browser, forms: &[Vec<(&str, &str)>]) {
    let grant = browser.grants().await["items"][0]["id"].as_str().expect("a grant").to_owned();
    let requests = futures::future::join_all(forms.iter().map(|form| raw_token(s, form)));
    let (answers, ()) = tokio::join!(requests, browser.revoke_grant(&grant));
    for (status, body) in answers {
        if status != StatusCode::OK {
            assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
            continue;
        }
        // Tokens issued before the revocation took effect: their refresh token is dead.
        let refresh = body["refresh_token"].as_str().expect("offline_access gives a refresh token");
        let (status, body) = raw_token(s, &refresh_form(s, refresh)).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    }
    assert_eq!(rows_of_the_application(s).await, [0, 0, 0], "a token request outlived its grant's revocation");
}

#[tokio::test]
async fn exchanges_racing_the_revocation_of_their_grant_leave_nothing_of_it_alive() {
    let s = setup(false, json!({})).await;
    let browser = Browser::new(&s.app);
    let codes = offline_codes_in_one_browser(&s, &browser, 12).await;
    let forms: Vec<_> = codes.iter().map(|parts| code_form(&s, parts).to_vec()).collect();
    race_the_revocation_of_the_grant(&s, &browser, &forms).await;
}

/// Alice's user id.
async fn alice_id(s: &Setup) -> String {
    let users =
        s.app.get(&format!("/api/tenants/{}/users?q=alice", s.tenant)).await.assert_status(StatusCode::OK).json();
    users["items"][0]["id"].as_str().expect("alice").to_owned()
}

#[tokio::test]
async fn a_code_issued_before_a_security_profile_change_is_refused() {
    let s = setup(false, json!({})).await;
    let (_, parts) = offline_code(&s).await;
    // The admin resets alice's second factors between the code and its exchange: the
    // session the code came from has ended, so the code has too.
    reset_second_factors_of_alice(&s).await;
    let (status, body) = raw_token(&s, &code_form(&s, &parts)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    assert_eq!(tokens_issued(&s.app.audit("").await), 0);
}

#[tokio::test]
async fn a_code_whose_user_was_deleted_before_the_exchange_is_refused() {
    let s = setup(false, json!({})).await;
    let (_, parts) = offline_code(&s).await;
    let alice = alice_id(&s).await;
    s.app.delete(&format!("/api/users/{alice}")).await.assert_status(StatusCode::NO_CONTENT);
    let (status, body) = raw_token(&s, &code_form(&s, &parts)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    assert_eq!(tokens_issued(&s.app.audit("").await), 0);
    assert_eq!(rows_of_the_application(&s).await, [0, 0, 0]);
}

#[tokio::test]
async fn an_altered_or_forged_code_is_unknown() {
    use twofold_server::oidc::code::Code;
    use twofold_server::secrets::Keys;
    let s = setup(false, json!({})).await;
    let (_, parts) = offline_code(&s).await;
    let keys = s.app.running.state.keys().clone();
    // The attacker knows exactly what a code holds (the grant, alice, the redirect
    // URI) and changes one thing at a time.
    let genuine = Code::open(&keys, &parts[0]).expect("the server's own code opens");
    let mut altered = parts[0].clone().into_bytes();
    let middle = altered.len() / 2;
    altered[middle] = if altered[middle] == b'A' { b'B' } else { b'A' };
    let later = Code { expires_at: genuine.expires_at + 3_600_000, ..genuine.clone() };
    let forged = [
        String::from_utf8(altered).unwrap(),
        // The same grant sealed under another key, even with the key's id copied.
        later.seal(&Keys::from_bytes([1u8; 32])),
        format!("{}.{}", keys.current_id(), later.seal(&Keys::from_bytes([1u8; 32])).split_once('.').unwrap().1),
        // The same bytes sealed by the server's key for another purpose.
        keys.seal("remember-browser", &keys.open("oidc-authorization-code", &later.seal(&keys)).unwrap()),
        String::new(),
        "x".repeat(4096),
    ];
    for code in &forged {
        let parts = [code.clone(), parts[1].clone(), parts[2].clone()];
        let (status, body) = raw_token(&s, &code_form(&s, &parts)).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    }
    assert_eq!(tokens_issued(&s.app.audit("").await), 0);
    // The genuine code was never spent by any of those.
    let (status, body) = raw_token(&s, &code_form(&s, &parts)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_replay_that_fails_a_check_as_well_still_revokes_what_the_code_gave() {
    let s = setup(false, json!({})).await;
    let (rp, parts) = offline_code(&s).await;
    let (status, first) = raw_token(&s, &code_form(&s, &parts)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    // The thief has the code but not the verifier.
    let wrong = [parts[0].clone(), parts[1].clone(), "x".repeat(43)];
    let (status, second) = raw_token(&s, &code_form(&s, &wrong)).await;
    assert_eq!((status, second["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let refresh = RefreshToken::new(first["refresh_token"].as_str().unwrap().to_owned());
    assert!(rp.exchange_refresh_token(&refresh).unwrap().request_async(&rp_http()).await.is_err());
    assert!(s.app.audit("").await.iter().any(|e| e["action"] == "oidc.code_replayed"));
}

#[tokio::test]
async fn an_authorization_request_that_the_session_satisfies_writes_nothing() {
    // A second request of the same browser within a minute of the first: the grant is
    // recorded and recently touched, so the code is sealed, not stored, and nothing is
    // written until it is exchanged.
    let s = setup(false, json!({})).await;
    let (rp, browser, first) = offline_code_in_browser(&s).await;
    let (status, body) = raw_token(&s, &code_form(&s, &first)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let db = s.app.running.state.db().clone();
    let writes = db.stamps().seen();
    let (url, csrf, _nonce, verifier) = start(&rp, &["offline_access"]);
    let code = code_via_browser(&s, &browser, &url, &csrf).await;
    assert_eq!(db.stamps().seen(), writes, "the authorization request wrote");
    let parts = [code, first[1].clone(), verifier.secret().clone()];
    let (status, body) = raw_token(&s, &code_form(&s, &parts)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(db.stamps().seen() > writes);
    // The exchange spent its code and inserted the rest: no session, user or grant a
    // cache keeps changed, so none of them is read again for it.
    let users =
        s.app.get(&format!("/api/tenants/{}/users?q=alice", s.tenant)).await.assert_status(StatusCode::OK).json();
    let alice = users["items"][0]["id"].as_str().expect("alice");
    assert!(db.stamps().current(writes, Some(alice)), "the token exchange ended alice's rows kept in memory");
    // So does a refresh: the token used, the next one and an audit event inserted.
    let refreshed = db.stamps().seen();
    let refresh = body["refresh_token"].as_str().expect("a refresh token");
    let (status, body) = raw_token(&s, &refresh_form(&s, refresh)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(db.stamps().seen() > refreshed);
    assert!(db.stamps().current(refreshed, Some(alice)), "the refresh ended alice's rows kept in memory");
}

/// The form that exchanges `[code, secret, verifier]` for tokens.
fn code_form<'a>(s: &'a Setup, parts: &'a [String; 3]) -> [(&'static str, &'a str); 6] {
    [
        ("grant_type", "authorization_code"),
        ("code", parts[0].as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", s.client_id.as_str()),
        ("client_secret", parts[1].as_str()),
        ("code_verifier", parts[2].as_str()),
    ]
}

#[tokio::test]
async fn a_code_works_once_and_its_replay_revokes_what_it_gave() {
    let s = setup(false, json!({})).await;
    let (rp, parts) = offline_code(&s).await;
    let form = code_form(&s, &parts);
    let (status, first) = raw_token(&s, &form).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, second) = raw_token(&s, &form).await;
    assert_eq!((status, second["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    // What the first exchange issued is revoked: its refresh token and access token.
    let refresh = RefreshToken::new(first["refresh_token"].as_str().unwrap().to_owned());
    assert!(rp.exchange_refresh_token(&refresh).unwrap().request_async(&rp_http()).await.is_err());
    let access = openidconnect::AccessToken::new(first["access_token"].as_str().unwrap().to_owned());
    assert!(!userinfo_ok(&rp, access).await);
    assert!(s.app.audit("").await.iter().any(|e| e["action"] == "oidc.code_replayed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_code_redeemed_by_racers_at_once_issues_tokens_once() {
    // Single use is decided by the database in the statement (or transaction) that
    // issues the tokens: of eight simultaneous exchanges exactly one gets tokens, and
    // nothing of the others is written (no second family, no second audit event).
    let s = setup(false, json!({})).await;
    let (_, parts) = offline_code(&s).await;
    let form = code_form(&s, &parts);
    let answers = futures::future::join_all((0..8).map(|_| raw_token(&s, &form))).await;
    let winners: Vec<&Value> = answers.iter().filter(|(status, _)| *status == StatusCode::OK).map(|(_, b)| b).collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    assert!(winners[0]["refresh_token"].is_string(), "{}", winners[0]);
    for (status, body) in answers.iter().filter(|(status, _)| *status != StatusCode::OK) {
        assert_eq!((*status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    }
    let issued = s.app.audit("").await.iter().filter(|e| e["action"] == "oidc.token_issued").count();
    assert_eq!(issued, 1, "tokens were issued more than once");
}

/// The form that exchanges `refresh` for tokens as the setup's client.
fn refresh_form<'a>(s: &'a Setup, refresh: &'a str) -> [(&'static str, &'a str); 4] {
    [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_id", s.client_id.as_str()),
        ("client_secret", s.client_secret.as_deref().expect("confidential")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_token_used_by_racers_at_once_gives_tokens_once() {
    // A copied refresh token presented by its holder and the thief at the same moment:
    // one request gets tokens, the others are refused as reuse, which revokes the
    // family, so the token the winner got dies too and no second token is issued.
    let s = setup(false, json!({})).await;
    let (_, parts) = offline_code(&s).await;
    let (status, first) = raw_token(&s, &code_form(&s, &parts)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let refresh = first["refresh_token"].as_str().expect("offline_access gives a refresh token");
    let form = refresh_form(&s, refresh);
    let answers = futures::future::join_all((0..8).map(|_| raw_token(&s, &form))).await;
    let winners: Vec<&Value> = answers.iter().filter(|(status, _)| *status == StatusCode::OK).map(|(_, b)| b).collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(status, _)| *status != StatusCode::OK) {
        assert_eq!((*status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    }
    let next = winners[0]["refresh_token"].as_str().expect("a rotated refresh token");
    let (status, body) = raw_token(&s, &refresh_form(&s, next)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    let events = s.app.audit("").await;
    assert_eq!(tokens_issued(&events), 2, "one exchange of the code and one refresh");
    assert!(events.iter().any(|e| e["action"] == "oidc.refresh_reused"), "the reuse is audited");
    // The code's token and the winner's: nothing else was written.
    assert_eq!(rows_of_the_application(&s).await, [1, 1, 2]);
}

#[tokio::test]
async fn a_refused_refresh_writes_nothing_and_a_granted_one_is_audited_as_its_familys() {
    let app = TestApp::spawn_with(crate::helpers::Options { manual_clock: true, ..Default::default() }).await;
    app.sign_in_admin().await;
    let s = setup_on(app, false, json!({})).await;
    let (_, parts) = offline_code(&s).await;
    let (status, first) = raw_token(&s, &code_form(&s, &parts)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let refresh = first["refresh_token"].as_str().expect("offline_access gives a refresh token");
    let with_scope = |scope: &'static str| {
        let mut form = refresh_form(&s, refresh).to_vec();
        form.push(("scope", scope));
        form
    };
    // Wider than the grant: refused, and the token neither used nor followed by another.
    for wider in ["openid offline_access email", "profile", "openid  unknown"] {
        let (status, body) = raw_token(&s, &with_scope(wider)).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")), "{wider}");
    }
    assert_eq!(rows_of_the_application(&s).await, [1, 1, 1], "a refused refresh wrote a token");
    assert_eq!(tokens_issued(&s.app.audit("").await), 1, "a refused refresh was audited as tokens issued");
    // Within the grant (the same scopes, spaced as a client may): granted, once.
    let (status, body) = raw_token(&s, &with_scope(" offline_access  openid ")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let next = body["refresh_token"].as_str().expect("a rotated refresh token");
    assert_ne!(next, refresh);
    assert_eq!(rows_of_the_application(&s).await, [1, 1, 2]);
    let events = s.app.audit("").await;
    let issued: Vec<&Value> = events.iter().filter(|e| e["action"] == "oidc.token_issued").collect();
    assert_eq!(issued.len(), 2);
    // Newest first: the refresh's event names the family's user and the family.
    let (refreshed, exchanged) = (issued[0], issued[1]);
    assert_eq!(refreshed["actor_user_id"], json!(alice_id(&s).await), "{refreshed}");
    assert_eq!(refreshed["after"]["grant_type"], "refresh_token", "{refreshed}");
    assert_eq!(refreshed["after"]["family"], exchanged["after"]["family"], "{refreshed} {exchanged}");
    assert_eq!(refreshed["target"], exchanged["target"]);
    // Past the family's end: refused as no longer valid, and nothing written either
    // (the rows counted in the database: the admin's session has ended by then).
    crate::flows::advance_days(&s.app, 31);
    let (status, body) = raw_token(&s, &refresh_form(&s, next)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    assert_eq!(rows_of_the_application(&s).await, [1, 1, 2]);
    let pool = &s.app.running.state.db().pool;
    let (events,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = 'oidc.token_issued'")
        .fetch_one(pool)
        .await
        .expect("a count");
    assert_eq!(events, 2);
}

#[tokio::test]
async fn refreshes_racing_the_revocation_of_their_grant_leave_nothing_of_it_alive() {
    let s = setup(false, json!({})).await;
    let browser = Browser::new(&s.app);
    let mut refresh_tokens = Vec::new();
    for parts in offline_codes_in_one_browser(&s, &browser, 8).await {
        let (status, body) = raw_token(&s, &code_form(&s, &parts)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        refresh_tokens.push(body["refresh_token"].as_str().expect("a refresh token").to_owned());
    }
    let forms: Vec<_> = refresh_tokens.iter().map(|r| refresh_form(&s, r).to_vec()).collect();
    race_the_revocation_of_the_grant(&s, &browser, &forms).await;
}

#[tokio::test]
async fn codes_and_refresh_tokens_are_bound_to_their_client() {
    let s = setup(false, json!({})).await;
    // A second application of the same tenant.
    let other = s
        .app
        .post_json(
            &format!("/api/tenants/{}/applications", s.tenant),
            &json!({
                "name": "Other", "client_type": "confidential", "redirect_uris": [REDIRECT],
                "allowed_scopes": ["openid", "offline_access"], "first_party": true,
            }),
        )
        .await
        .assert_status(StatusCode::CREATED)
        .json();
    let other_id = other["application"]["client_id"].as_str().unwrap().to_owned();
    let other_secret = other["client_secret"].as_str().unwrap().to_owned();
    let (rp, _) = relying_party(&s).await;
    let browser = Browser::new(&s.app);
    let (url, csrf, _nonce, verifier) = start(&rp, &["offline_access"]);
    let code = code_via_browser(&s, &browser, &url, &csrf).await;
    // The other client presents the code: refused, and the code is not spent.
    let stolen = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", other_id.as_str()),
        ("client_secret", other_secret.as_str()),
        ("code_verifier", verifier.secret().as_str()),
    ];
    let (status, body) = raw_token(&s, &stolen).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&rp_http())
        .await
        .expect("the rightful client still redeems it");
    // The other client presents the refresh token: refused.
    let refresh = tokens.refresh_token().unwrap().secret().clone();
    let as_other = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("client_id", other_id.as_str()),
        ("client_secret", other_secret.as_str()),
    ];
    let (status, body) = raw_token(&s, &as_other).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    // Even with the token's own row naming the other client (on PostgreSQL no key ties
    // it to its family's application), the family's application refuses it.
    let pool = &s.app.running.state.db().pool;
    let rename = "UPDATE oidc_refresh_tokens SET application_id = $1 WHERE application_id = $2";
    sqlx::query(rename).bind(&other_id).bind(&s.client_id).execute(pool).await.unwrap();
    let (status, body) = raw_token(&s, &as_other).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    sqlx::query(rename).bind(&s.client_id).bind(&other_id).execute(pool).await.unwrap();
    // A wrong secret is invalid_client.
    let (status, body) = raw_token(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("client_id", s.client_id.as_str()),
            ("client_secret", "wrong"),
        ],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    // And the refresh token still works for its own client.
    rp.exchange_refresh_token(&RefreshToken::new(refresh))
        .unwrap()
        .request_async(&rp_http())
        .await
        .expect("own client");
}

#[tokio::test]
async fn a_client_of_tenant_a_never_gets_a_user_of_tenant_b() {
    let s = setup(false, json!({})).await;
    let b = s.app.create_tenant("globex").await;
    s.app.create_tenant_user(&b.id, "bob", PASSWORD).await;
    let (rp, _) = relying_party(&s).await;
    // Bob is signed in (to tenant B) in this browser; acme's client asks.
    let browser = Browser::new(&s.app);
    browser.sign_in(Some("globex"), "bob").await;
    let (url, _csrf, _nonce, _verifier) = start(&rp, &[]);
    let location = browser.location(&url).await;
    let handle =
        location.split("request=").nth(1).unwrap_or_else(|| panic!("sent to sign in, not {location}")).to_owned();
    // Resuming with Bob's session still asks for a sign-in to acme: no code for Bob.
    let resumed = browser.resume(&handle).await;
    assert_eq!(resumed["next"], "sign_in", "{resumed}");
    assert_eq!(resumed["tenant"], "acme");
    // Acme's client is unknown at tenant B's issuer.
    let b_issuer = s.issuer.replace("/t/acme", "/t/globex");
    let url = url.replace(&s.issuer, &b_issuer);
    let resp = browser.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().get("location").is_none());
    // ... and at tenant B's token endpoint.
    let secret = s.client_secret.clone().unwrap();
    let resp = rp_http()
        .post(format!("{b_issuer}/oauth2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", s.client_id.as_str()),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn prompt_none_without_a_session_returns_login_required() {
    let s = setup(false, json!({})).await;
    let browser = Browser::new(&s.app);
    let url = format!(
        "{}/oauth2/authorize?response_type=code&scope=openid&client_id={}&redirect_uri={}&state=quiet&prompt=none",
        s.issuer,
        s.client_id,
        urlencode(REDIRECT)
    );
    let q = query_of(&browser.location(&url).await);
    assert_eq!(q["error"], "login_required");
    assert_eq!(q["state"], "quiet");
    assert_eq!(q["iss"], s.issuer);
    // With a session, prompt=none answers with a code at once.
    browser.sign_in(Some("acme"), "alice").await;
    let q = query_of(&browser.location(&url).await);
    assert!(q.contains_key("code"), "{q:?}");
}

#[tokio::test]
async fn parallel_first_sign_ins_to_an_application_all_get_a_code() {
    // Two tabs (or a burst) sign in to an application the user has no grant for yet:
    // each must get a code, and one grant results, not a unique-key failure.
    let s = setup(false, json!({})).await;
    let browser = Browser::new(&s.app);
    browser.sign_in(Some("acme"), "alice").await;
    let urls: Vec<String> = (0..12)
        .map(|i| {
            format!(
                "{}/oauth2/authorize?response_type=code&scope=openid&client_id={}&redirect_uri={}&state=tab{i}",
                s.issuer,
                s.client_id,
                urlencode(REDIRECT)
            )
        })
        .collect();
    let locations = futures::future::join_all(urls.iter().map(|u| browser.location(u))).await;
    for (i, location) in locations.iter().enumerate() {
        let q = query_of(location);
        assert!(q.contains_key("code"), "tab {i}: {location}");
        assert_eq!(q["state"], format!("tab{i}"));
    }
    let grants = browser.grants().await;
    assert_eq!(grants["items"].as_array().map(Vec::len), Some(1), "{grants}");
}

#[tokio::test]
async fn a_grant_used_again_within_a_minute_is_not_rewritten_and_its_codes_work() {
    use crate::flows::advance_seconds;
    let app = TestApp::spawn_with(crate::helpers::Options { manual_clock: true, ..Default::default() }).await;
    app.sign_in_admin().await;
    let s = setup_on(app, false, json!({})).await;
    let browser = Browser::new(&s.app);
    browser.sign_in(Some("acme"), "alice").await;
    let url = format!(
        "{}/oauth2/authorize?response_type=code&scope=openid&client_id={}&redirect_uri={}&state=s\
         &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        s.issuer,
        s.client_id,
        urlencode(REDIRECT)
    );
    let last_used = async || browser.grants().await["items"][0]["last_used_at"].as_str().expect("one grant").to_owned();
    let redeem = async |location: &str| {
        let code = query_of(location)["code"].clone();
        let secret = s.client_secret.clone().unwrap_or_default();
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            ("client_id", s.client_id.as_str()),
            ("client_secret", secret.as_str()),
        ];
        raw_token(&s, &form).await.0
    };
    let first = browser.location(&url).await;
    let recorded = last_used().await;
    assert_eq!(redeem(&first).await, StatusCode::OK);
    // Half a minute later: the code is stored under the grant as it is.
    advance_seconds(&s.app, 30);
    let again = browser.location(&url).await;
    assert_eq!(last_used().await, recorded);
    assert_eq!(redeem(&again).await, StatusCode::OK);
    // Over a minute after it was written, the grant is touched again.
    advance_seconds(&s.app, 31);
    let later = browser.location(&url).await;
    assert_ne!(last_used().await, recorded);
    assert_eq!(redeem(&later).await, StatusCode::OK);
    // A grant revoked after its last use is recorded anew, not used as it was.
    let id = browser.grants().await["items"][0]["id"].as_str().expect("a grant id").to_owned();
    browser.revoke_grant(&id).await;
    let renewed = browser.location(&url).await;
    assert_eq!(redeem(&renewed).await, StatusCode::OK);
    let after = browser.grants().await;
    assert_ne!(after["items"][0]["id"].as_str(), Some(id.as_str()), "{after}");
}

#[tokio::test]
async fn an_application_demanding_two_factor_where_it_is_disabled_is_unmet() {
    let s = setup(false, json!({ "require_two_factor": true })).await;
    s.app.set_feature(&s.tenant, "disabled").await;
    let browser = Browser::new(&s.app);
    let url = format!(
        "{}/oauth2/authorize?response_type=code&scope=openid&client_id={}&redirect_uri={}&state=u",
        s.issuer,
        s.client_id,
        urlencode(REDIRECT)
    );
    let q = query_of(&browser.location(&url).await);
    assert_eq!(q["error"], "unmet_authentication_requirements");
    // An admin's what-if of a sign-in to it says the same, and why.
    let carol = s.app.create_tenant_user(&s.tenant, "carol", PASSWORD).await;
    let what = s
        .app
        .get(&format!("/api/users/{}/what-if?application_id={}", carol.id, s.client_id))
        .await
        .assert_status(StatusCode::OK)
        .json();
    assert_eq!(what["application"]["verdict"], "unmet", "{what}");
    assert!(what["application"]["trace"].to_string().contains("disabled"), "{what}");
    // The preview counts every user as refused, before and after keeping the rule, and
    // all of them let in once it is dropped.
    for (rule, refused) in [(json!({ "require_two_factor": true }), 2), (json!({ "require_two_factor": false }), 0)] {
        let preview = s
            .app
            .post_json(&format!("/api/applications/{}/preview", s.client_id), &rule)
            .await
            .assert_status(StatusCode::OK)
            .json();
        assert_eq!(preview["application"]["before"]["refused"], 2, "{preview}");
        assert_eq!(preview["application"]["after"]["refused"], refused, "{preview}");
        assert_eq!(preview["application"]["after"]["nothing_more"], 2 - refused, "{preview}");
    }
}

/// A client's credentials as the token endpoint judges them: `invalid_grant` for a
/// client it authenticated (the code is made up), `invalid_client` for one it did not.
async fn client_verdict(s: &Setup, client_id: &str, secret: &str) -> (StatusCode, Option<String>) {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", "made-up"),
        ("redirect_uri", REDIRECT),
        ("client_id", client_id),
        ("client_secret", secret),
    ];
    let (status, body) = raw_token(s, &form).await;
    (status, body["error"].as_str().map(str::to_owned))
}

/// Rotates the setup application's secret and returns the new one, shown this once.
async fn rotate_secret(s: &Setup) -> String {
    let rotated = s
        .app
        .post_json(&format!("/api/applications/{}/secret", s.client_id), &json!({}))
        .await
        .assert_status(StatusCode::OK)
        .json();
    rotated["client_secret"].as_str().expect("the new secret").to_owned()
}

#[tokio::test]
async fn a_rotated_secret_or_a_deleted_application_stops_working_at_once_though_just_read() {
    // The node keeps the application it just authenticated a client with; a change to
    // the application through this node must end that at once, not when the entry ages.
    let s = setup(false, json!({})).await;
    let old = s.client_secret.clone().expect("a confidential client");
    let authenticated = (StatusCode::BAD_REQUEST, Some("invalid_grant".to_owned()));
    let refused = (StatusCode::UNAUTHORIZED, Some("invalid_client".to_owned()));
    assert_eq!(client_verdict(&s, &s.client_id, &old).await, authenticated);
    let new = rotate_secret(&s).await;
    assert_eq!(client_verdict(&s, &s.client_id, &old).await, refused, "the rotated secret still works");
    assert_eq!(client_verdict(&s, &s.client_id, &new).await, authenticated);
    s.app.delete(&format!("/api/applications/{}", s.client_id)).await.assert_status(StatusCode::NO_CONTENT);
    assert_eq!(client_verdict(&s, &s.client_id, &new).await, refused, "the deleted application still works");
}

#[tokio::test]
async fn a_deleted_tenants_issuer_is_gone_at_once_though_just_read() {
    // The node keeps the tenant an issuer's path names; deleting the tenant through this
    // node must end that at once.
    let s = setup(false, json!({})).await;
    let discovery = format!("{}/.well-known/openid-configuration", s.issuer);
    for _ in 0..2 {
        assert_eq!(rp_http().get(&discovery).send().await.unwrap().status(), StatusCode::OK);
    }
    s.app.delete(&format!("/api/tenants/{}", s.tenant)).await.assert_status(StatusCode::NO_CONTENT);
    let after = rp_http().get(&discovery).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::NOT_FOUND, "the deleted tenant's issuer still answers");
    let body: Value = after.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
}

#[tokio::test]
async fn applications_are_managed_per_scope_and_audited() {
    let s = setup(false, json!({})).await;
    // Acme's tenant admin sees acme's applications, not the host's or another tenant's.
    let (other, _, other_admin) = s.app.tenant_with_admin("globex", "gadmin").await;
    let listed = other_admin.get(&format!("/api/tenants/{}/applications", s.tenant)).await;
    assert_eq!(listed.status, StatusCode::FORBIDDEN);
    let one = other_admin.get(&format!("/api/applications/{}", s.client_id)).await;
    one.assert_error(StatusCode::NOT_FOUND, "not_found");
    let own =
        other_admin.get(&format!("/api/tenants/{}/applications", other.id)).await.assert_status(StatusCode::OK).json();
    assert_eq!(own["items"], json!([]));
    // Validation speaks the API's error shape.
    let bad = s.app.post_json("/api/host/applications", &json!({
        "name": "X", "client_type": "public", "redirect_uris": ["http://example.com/cb"], "allowed_scopes": ["openid"],
    })).await;
    bad.assert_error(StatusCode::BAD_REQUEST, "invalid_field");
    // Rotating the secret shows the new one once (that the old one stops working:
    // `a_rotated_secret_or_a_deleted_application_stops_working_at_once_though_just_read`).
    let rotated = rotate_secret(&s).await;
    assert_ne!(Some(rotated.as_str()), s.client_secret.as_deref());
    let audit = s.app.audit("").await;
    assert!(audit.iter().any(|e| e["action"] == "application.created"));
    assert!(audit.iter().any(|e| e["action"] == "application.secret_rotated"));
    // The OpenAPI document lists the new operations.
    let doc = s.app.get("/api/openapi.json").await.json();
    assert!(doc["paths"]["/api/tenants/{tenant_id}/applications"]["post"].is_object());
    assert!(doc["paths"]["/api/oidc/requests/{handle}"]["post"].is_object());
}

#[tokio::test]
async fn consent_is_asked_once_and_a_revoked_grant_kills_its_tokens() {
    let s = setup(false, json!({ "first_party": false })).await;
    let (rp, _) = relying_party(&s).await;
    let browser = Browser::new(&s.app);
    browser.sign_in(Some("acme"), "alice").await;
    let (url, _csrf, _nonce, verifier) = start(&rp, &["offline_access"]);
    let location = browser.location(&url).await;
    let handle = location.split("request=").nth(1).expect("consent goes through the web app").to_owned();
    let asked = browser.resume(&handle).await;
    assert_eq!(asked["next"], "consent", "{asked}");
    let (_, granted) = browser.post(&format!("/api/oidc/requests/{handle}"), &json!({ "consent": true })).await;
    let code = query_of(granted["redirect_to"].as_str().unwrap())["code"].clone();
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&rp_http())
        .await
        .expect("exchange");
    // Remembered: the next request needs no consent.
    let (url, _csrf, _n, _v) = start(&rp, &["offline_access"]);
    assert!(browser.location(&url).await.starts_with(REDIRECT));
    // The account page lists the grant and revokes it: its refresh token dies.
    let list = browser.grants().await;
    let grant = list["items"][0]["id"].as_str().expect("a grant").to_owned();
    assert_eq!(list["items"][0]["application"], "Wiki");
    browser.revoke_grant(&grant).await;
    let refresh = tokens.refresh_token().unwrap().clone();
    assert!(rp.exchange_refresh_token(&refresh).unwrap().request_async(&rp_http()).await.is_err());
    // Refusing consent sends the client access_denied.
    let (url, _csrf, _n, _v) = start(&rp, &[]);
    let handle = browser.location(&url).await.split("request=").nth(1).unwrap().to_owned();
    let (_, refused) = browser.post(&format!("/api/oidc/requests/{handle}"), &json!({ "consent": false })).await;
    assert_eq!(query_of(refused["redirect_to"].as_str().unwrap())["error"], "access_denied");
}

#[tokio::test]
async fn es256_applications_get_es256_tokens_a_relying_party_verifies() {
    let s = setup(false, json!({ "token_alg": "ES256" })).await;
    let (rp, _) = relying_party(&s).await;
    let browser = Browser::new(&s.app);
    let (url, csrf, nonce, verifier) = start(&rp, &[]);
    let code = code_via_browser(&s, &browser, &url, &csrf).await;
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&rp_http())
        .await
        .expect("exchange");
    let id_token = tokens.id_token().expect("ID token");
    let id_verifier = rp.id_token_verifier().set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    id_token.claims(&id_verifier, &nonce).expect("an ES256 ID token verified through the JWKS");
    assert_eq!(*id_token.signing_alg().unwrap(), CoreJwsSigningAlgorithm::EcdsaP256Sha256);
    // The access token is no ID token: userinfo takes it, and refuses the ID token.
    assert!(userinfo_ok(&rp, tokens.access_token().clone()).await);
    assert!(!userinfo_ok(&rp, openidconnect::AccessToken::new(id_token.to_string())).await);
}

/// Part `index` of a compact JWS (0 the header, 1 the claims), read without checking
/// the signature (the other tests verify signatures with the relying party; the tests
/// that read parts run on a manual clock the RP does not share).
fn jwt_part(jwt: &str, index: usize) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(index).expect("a JWT");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("base64url"))
        .expect("a JSON part")
}

/// The claims of a JWT, read without checking it.
fn claims_of(jwt: &str) -> Value {
    jwt_part(jwt, 1)
}

#[tokio::test]
async fn an_old_second_factor_steps_up_without_a_password() {
    use crate::flows::{advance_seconds, next_totp};
    let app = TestApp::spawn_with(crate::helpers::Options { manual_clock: true, ..Default::default() }).await;
    app.sign_in_admin().await;
    let t = app.create_tenant("acme").await;
    app.create_tenant_user(&t.id, "alice", PASSWORD).await;
    // The README's example: 2FA of at least an authenticator app, at most an hour old.
    let created = app
        .post_json(
            &format!("/api/tenants/{}/applications", t.id),
            &json!({"name":"Wiki","client_type":"confidential","redirect_uris":[REDIRECT],
                "post_logout_redirect_uris":[LOGOUT_RETURN],
                "allowed_scopes":["openid","profile","email","offline_access"],
                "first_party":true,"require_two_factor":true,"min_strength":"app","max_age_seconds":3600}),
        )
        .await
        .assert_status(StatusCode::CREATED)
        .json();
    let client_id = created["application"]["client_id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    let issuer = created["application"]["issuer"].as_str().unwrap().to_owned();
    let browser = Browser::new(&app);
    browser.sign_in(Some("acme"), "alice").await;
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let url = format!(
        "{issuer}/oauth2/authorize?response_type=code&scope=openid&client_id={client_id}&redirect_uri={}\
         &code_challenge={challenge}&code_challenge_method=S256&nonce=n1",
        urlencode(REDIRECT)
    );
    // A password-only session and no factor yet: enrol first.
    let handle = browser.location(&url).await.split("request=").nth(1).expect("parked").to_owned();
    let need = browser.resume(&handle).await;
    assert_eq!((need["next"].as_str(), need["min_strength"].as_str()), (Some("enroll"), Some("app")), "{need}");
    let (status, started) = browser.post("/api/account/authenticator", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let totp = started["secret"].as_str().unwrap().to_owned();
    let (status, body) =
        browser.post("/api/account/authenticator/confirm", &json!({ "code": next_totp(&app, &totp) })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Confirming the factor proved it: the request goes through.
    let done = browser.resume(&handle).await;
    assert_eq!(done["next"], "redirect", "{done}");
    // Over an hour later (the session kept alive) the factor is too old for this
    // application: step up with the authenticator alone, no password.
    advance_seconds(&app, 50 * 60);
    let me = browser.http.get(format!("{}/api/auth/me", browser.base)).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    advance_seconds(&app, 15 * 60);
    let handle = browser.location(&url).await.split("request=").nth(1).expect("parked").to_owned();
    let need = browser.resume(&handle).await;
    assert_eq!((need["next"].as_str(), need["min_strength"].as_str()), (Some("step_up"), Some("app")), "{need}");
    let code = next_totp(&app, &totp);
    let (status, body) = browser.post("/api/auth/step-up", &json!({ "method": "authenticator", "code": code })).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let stepped_at = crate::flows::now_secs(&app);
    let done = browser.resume(&handle).await;
    let code = query_of(done["redirect_to"].as_str().expect("redirect_to"))["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
    ];
    let resp = rp_http()
        .post(format!("{issuer}/oauth2/token"))
        .basic_auth(&client_id, Some(&secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let tokens: Value = resp.json().await.unwrap();
    let id = claims_of(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["acr"], "urn:twofold:acr:2fa:app");
    assert_eq!(id["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(id["auth_time"], json!(stepped_at));
    assert_eq!(id["nonce"], "n1");
    // The step-up opened no sensitive account change: that still needs the password.
    let (status, body) = browser.post("/api/account/recovery-codes", &json!({})).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("reauthentication_required")), "{body}");
    // A month on, housekeeping has removed the requests, codes and token families: the
    // two parked requests, the spent code and its family (the first code, never
    // exchanged, left no row).
    advance_seconds(&app, 31 * 86_400);
    match app.running.state.housekeep().await.expect("housekeeping") {
        twofold_server::housekeeping::Outcome::Ran(report) => assert_eq!(report.oidc, 4, "{report:?}"),
        other => panic!("housekeeping did not run: {other:?}"),
    }
    let pool = &app.running.state.db().pool;
    for table in ["oidc_auth_requests", "oidc_authorization_codes", "oidc_token_families"] {
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(pool)
            .await
            .expect("count");
        assert_eq!(n, 0, "{table}");
    }
}

#[tokio::test]
async fn signing_keys_are_published_before_use_and_kept_until_their_tokens_expire() {
    use crate::flows::advance_seconds;
    let app = TestApp::spawn_with(crate::helpers::Options { manual_clock: true, ..Default::default() }).await;
    let kids = |body: Value| -> Vec<String> {
        body["keys"].as_array().expect("keys").iter().map(|k| k["kid"].as_str().expect("kid").to_owned()).collect()
    };
    let jwks = || async { app.get("/oauth2/jwks").await.assert_status(StatusCode::OK).json() };
    let first = kids(jwks().await);
    assert_eq!(first.len(), 2, "one RS256 and one ES256 key: {first:?}");
    // Past the rotation period: successors are published, the old keys still sign.
    advance_seconds(&app, 31 * 86_400);
    let both = kids(jwks().await);
    assert_eq!(both.len(), 4, "{both:?}");
    assert!(first.iter().all(|k| both.contains(k)));
    // A day later the successors sign; the old keys stay published while their tokens
    // (10 minutes) may live, plus an hour of margin...
    advance_seconds(&app, 25 * 3600);
    assert_eq!(kids(jwks().await).len(), 4);
    // ... and then go.
    advance_seconds(&app, 2 * 3600);
    let after = kids(jwks().await);
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.iter().all(|k| !first.contains(k)));
    // Stored encrypted: no private key material in the row as written.
    let (private,): (String,) = sqlx::query_as("SELECT private_key FROM oidc_signing_keys LIMIT 1")
        .fetch_one(&app.running.state.db().pool)
        .await
        .unwrap();
    let key_id = app.running.state.keys().current_id().to_owned();
    assert!(private.starts_with(&format!("v2:{key_id}:")), "encrypted with the current secret key: {private:.12}");
}

/// The `kid` and `alg` in a compact JWS's header.
fn kid_and_alg(jwt: &str) -> (String, String) {
    let header = jwt_part(jwt, 0);
    (header["kid"].as_str().expect("kid").to_owned(), header["alg"].as_str().expect("alg").to_owned())
}

#[tokio::test]
async fn tokens_are_signed_by_the_successor_key_once_it_is_due_though_the_old_one_signed_here_before() {
    use crate::flows::advance_seconds;
    // The node keeps each key parsed after its first signature: that must not keep a
    // replaced key signing.
    for alg in ["RS256", "ES256"] {
        let app = TestApp::spawn_with(crate::helpers::Options { manual_clock: true, ..Default::default() }).await;
        app.sign_in_admin().await;
        let s = setup_on(app, false, json!({ "token_alg": alg })).await;
        let (rp, _) = relying_party(&s).await;
        let app = &s.app;
        let published = || async {
            let body = app.get("/oauth2/jwks").await.assert_status(StatusCode::OK).json();
            body["keys"].as_array().expect("keys").iter().map(|k| k["kid"].as_str().expect("kid").to_owned()).collect()
        };
        let tokens = signed_in_tokens(&s, &rp, &[]).await;
        let (first, signed_alg) = kid_and_alg(tokens["id_token"].as_str().expect("id_token"));
        assert_eq!(signed_alg, alg);
        assert_eq!(kid_and_alg(tokens["access_token"].as_str().expect("access token")).0, first);
        // Successors published ahead of use: the first key still signs.
        advance_seconds(app, 31 * 86_400);
        let before: Vec<String> = published().await;
        let tokens = signed_in_tokens(&s, &rp, &[]).await;
        assert_eq!(kid_and_alg(tokens["id_token"].as_str().expect("id_token")).0, first);
        // A day later the successor is due and signs both tokens.
        advance_seconds(app, 25 * 3600);
        let tokens = signed_in_tokens(&s, &rp, &[]).await;
        let (next, signed_alg) = kid_and_alg(tokens["id_token"].as_str().expect("id_token"));
        assert_eq!(signed_alg, alg);
        assert_ne!(next, first, "{alg}: the replaced key still signs");
        assert!(before.contains(&next), "{alg}: signed by a key published a day before: {next} not in {before:?}");
        assert_eq!(kid_and_alg(tokens["access_token"].as_str().expect("access token")).0, next);
    }
}

#[tokio::test]
async fn a_security_profile_change_ends_the_tokens_of_earlier_sign_ins() {
    let s = setup(false, json!({})).await;
    let (rp, _) = relying_party(&s).await;
    let tokens = signed_in_tokens(&s, &rp, &["offline_access"]).await;
    let access = openidconnect::AccessToken::new(tokens["access_token"].as_str().unwrap().to_owned());
    assert!(userinfo_ok(&rp, access.clone()).await);
    reset_second_factors_of_alice(&s).await;
    assert!(!userinfo_ok(&rp, access).await, "the access token ends with the old stamp");
    let refresh = RefreshToken::new(tokens["refresh_token"].as_str().unwrap().to_owned());
    assert!(rp.exchange_refresh_token(&refresh).unwrap().request_async(&rp_http()).await.is_err());
}

#[tokio::test]
async fn max_age_zero_asks_for_a_new_sign_in_which_then_suffices() {
    let s = setup(false, json!({})).await;
    let (rp, _) = relying_party(&s).await;
    let browser = Browser::new(&s.app);
    browser.sign_in(Some("acme"), "alice").await;
    let (url, _csrf, _nonce, _verifier) = start(&rp, &[]);
    let url = format!("{url}&max_age=0");
    let location = browser.location(&url).await;
    let handle = location.split("request=").nth(1).unwrap_or_else(|| panic!("sent to sign in, not {location}"));
    assert_eq!(browser.resume(handle).await["next"], "sign_in", "the existing session is too old");
    browser.sign_in(Some("acme"), "alice").await;
    let done = browser.resume(handle).await;
    assert_eq!(done["next"], "redirect", "a sign-in after the request meets max_age=0: {done}");
    assert!(query_of(done["redirect_to"].as_str().unwrap()).contains_key("code"));
}

/// A single-page application calls discovery, the keys, the token endpoint and userinfo
/// from its own origin; the endpoints a browser navigates to and the web app's API
/// grant no other origin anything, and no answer allows credentials (cookies).
#[tokio::test]
async fn scripts_of_other_origins_reach_the_token_endpoints_but_not_the_cookie_ones() {
    let s = setup(true, json!({})).await;
    let origin = "https://spa.example.com";
    let http = rp_http();
    let preflight = |path: String, method: &'static str, headers: &'static str| {
        http.request(reqwest::Method::OPTIONS, path)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", method)
            .header("Access-Control-Request-Headers", headers)
            .send()
    };
    for (path, method, headers) in [
        ("/oauth2/token", "POST", "content-type"),
        ("/oauth2/userinfo", "GET", "authorization"),
        ("/oauth2/jwks", "GET", "content-type"),
        ("/.well-known/openid-configuration", "GET", "content-type"),
    ] {
        let resp = preflight(format!("{}{path}", s.issuer), method, headers).await.expect("preflight");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        let h = resp.headers();
        assert_eq!(h.get("access-control-allow-origin").and_then(|v| v.to_str().ok()), Some("*"), "{path}");
        let allowed = h.get("access-control-allow-headers").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(allowed.to_ascii_lowercase().contains(headers), "{path}: {allowed}");
        assert!(h.get("access-control-allow-credentials").is_none(), "{path}");
    }
    // The actual calls carry the header too, errors included (a script must be able to
    // read `invalid_grant`).
    let resp = http.get(format!("{}/oauth2/jwks", s.issuer)).header("Origin", origin).send().await.unwrap();
    assert_eq!(resp.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()), Some("*"));
    let resp = http
        .post(format!("{}/oauth2/token", s.issuer))
        .header("Origin", origin)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=authorization_code&code=nope&client_id={}", s.client_id))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()), Some("*"));
    // Nothing that reads the session cookie answers another origin.
    for (path, method) in [
        (format!("{}/oauth2/authorize", s.issuer), "GET"),
        (format!("{}/oauth2/logout", s.issuer), "GET"),
        (format!("http://{}/api/oidc/requests/x", s.app.running.addr), "POST"),
        (format!("http://{}/api/auth/sign-in", s.app.running.addr), "POST"),
    ] {
        let resp = preflight(path.clone(), method, "x-requested-with").await.expect("preflight");
        assert!(resp.headers().get("access-control-allow-origin").is_none(), "{path} granted a cross-origin call");
    }
}

/// The Python interpreter that has Authlib: `AUTHLIB_PYTHON`, else the virtualenv
/// `scripts/setup` makes.
fn authlib_python() -> String {
    let python = std::env::var("AUTHLIB_PYTHON").unwrap_or_else(|_| {
        format!("{}/.cache/twofold/schemathesis/bin/python", std::env::var("HOME").unwrap_or_default())
    });
    let ok =
        std::process::Command::new(&python).args(["-c", "import authlib"]).output().is_ok_and(|o| o.status.success());
    assert!(ok, "{python} cannot import authlib: run scripts/setup (or set AUTHLIB_PYTHON)");
    python
}

/// Python's Authlib, an implementation that shares no code with Twofold or the
/// `openidconnect` crate, signs a user in with the code flow, verifies the ID token by
/// its own rules, reads userinfo and rotates the refresh token; for an RS256 and an
/// ES256 application.
#[tokio::test]
async fn authlib_an_independent_relying_party_signs_in_verifies_and_refreshes() {
    let python = authlib_python();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/authlib_rp.py");
    let app = TestApp::spawn_as_admin().await;
    let t = app.create_tenant("acme").await;
    let alice = app.create_tenant_user(&t.id, "alice", PASSWORD).await;
    let browser = app.new_client();
    let signed_in = browser.sign_in(Some("acme"), "alice", PASSWORD).await.assert_status(StatusCode::OK);
    let cookies: Vec<String> =
        signed_in.set_cookies().iter().map(|line| line.split(';').next().unwrap_or_default().to_owned()).collect();
    for alg in ["RS256", "ES256"] {
        let created = app
            .post_json(
                &format!("/api/tenants/{}/applications", t.id),
                &json!({"name": format!("Py {alg}"), "client_type": "confidential", "redirect_uris": [REDIRECT],
                    "allowed_scopes": ["openid", "profile", "offline_access"], "first_party": true,
                    "token_alg": alg}),
            )
            .await
            .assert_status(StatusCode::CREATED)
            .json();
        let client_id = created["application"]["client_id"].as_str().unwrap().to_owned();
        let issuer = created["application"]["issuer"].as_str().unwrap().to_owned();
        let secret = created["client_secret"].as_str().unwrap().to_owned();
        let cookie = cookies.join("; ");
        let args = [script, issuer.as_str(), client_id.as_str(), secret.as_str(), REDIRECT, cookie.as_str()]
            .map(str::to_owned);
        let py = python.clone();
        // The script calls this server, which runs on this runtime: off it, then.
        let out = tokio::task::spawn_blocking(move || std::process::Command::new(py).args(args).output())
            .await
            .unwrap()
            .expect("run the Authlib relying party");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "Authlib refused ({alg}):\n{stderr}");
        let seen: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
        assert_eq!(seen["alg"], alg, "{seen}");
        assert_eq!(seen["kid_published"], true, "{seen}");
        assert_eq!(seen["sub"], json!(alice.id), "{seen}");
        assert_eq!(seen["aud"], json!(client_id), "{seen}");
        assert_eq!(seen["amr"], json!(["pwd"]), "{seen}");
        assert_eq!(seen["preferred_username"], "alice", "{seen}");
        // A rotated-out refresh token is refused, whoever presents it.
        assert_eq!((seen["replay_status"].as_u64(), seen["replay_error"].as_str()), (Some(400), Some("invalid_grant")));
    }
}

/// An admin sees what an application's rule does before and after saving it: the
/// what-if of a user signing in to it names the application as what decided, and the
/// preview counts who in the scope would be asked, and who could not answer.
#[tokio::test]
async fn the_what_if_and_the_preview_show_what_an_applications_rule_asks() {
    let s = setup(false, json!({})).await;
    let app = &s.app;
    let carol = app.create_tenant_user(&s.tenant, "carol", PASSWORD).await;
    let bob = app.create_tenant_user(&s.tenant, "bob", PASSWORD).await;
    app.give_factor(&bob.id).await;
    // No rule yet: the application changes nothing for carol, who has no factor.
    let plain = app.get(&format!("/api/users/{}/what-if", carol.id)).await.assert_status(StatusCode::OK).json();
    let with_app = app
        .get(&format!("/api/users/{}/what-if?application_id={}", carol.id, s.client_id))
        .await
        .assert_status(StatusCode::OK)
        .json();
    assert_eq!((plain["status"].as_str(), with_app["status"].as_str()), (Some("signed_in"), Some("signed_in")));
    assert!(plain.get("application").is_none(), "no application asked about: {plain}");
    assert_eq!(with_app["application"]["verdict"], "reuse", "{with_app}");
    // The preview of a rule: all three users newly asked when signing in to Wiki; alice
    // and carol have no factor, and bob's emailed codes are not an authenticator app.
    let rule = json!({ "require_two_factor": true, "min_strength": "app" });
    let preview = app
        .post_json(&format!("/api/applications/{}/preview", s.client_id), &rule)
        .await
        .assert_status(StatusCode::OK)
        .json();
    assert_eq!(preview["users_in_scope"], 3, "{preview}");
    assert_eq!(preview["newly_required"], 3, "{preview}");
    assert_eq!(preview["newly_required_without_factor"], 2, "{preview}");
    assert_eq!(preview["newly_required_without_strength"], 3, "{preview}");
    // What Wiki's sign-ins would ask, from the authorization decision itself: nothing
    // today; with the rule, every user must first enrol an authenticator app.
    let asks =
        |n: [u64; 4]| json!({ "nothing_more": n[0], "second_factor": n[1], "enroll_first": n[2], "refused": n[3] });
    assert_eq!(preview["application"]["before"], asks([3, 0, 0, 0]), "{preview}");
    assert_eq!(preview["application"]["after"], asks([0, 0, 3, 0]), "{preview}");
    // Once bob holds an authenticator app he would step up with it; the others enrol.
    sqlx::query("UPDATE users SET has_authenticator = 1 WHERE id = $1")
        .bind(&bob.id)
        .execute(&app.running.state.db().pool)
        .await
        .expect("update users");
    let again = app
        .post_json(&format!("/api/applications/{}/preview", s.client_id), &rule)
        .await
        .assert_status(StatusCode::OK)
        .json();
    assert_eq!(again["application"]["after"], asks([0, 1, 2, 0]), "{again}");
    // The preview saved nothing.
    let stored = app.get(&format!("/api/applications/{}", s.client_id)).await.json();
    assert_eq!(stored["require_two_factor"], false, "{stored}");
    // Saved, the rule decides carol's sign-ins to Wiki, and only those.
    let mut input = stored.clone();
    for k in ["id", "client_id", "tenant_id", "issuer", "created_at", "updated_at"] {
        input.as_object_mut().unwrap().remove(k);
    }
    input["require_two_factor"] = json!(true);
    input["min_strength"] = json!("app");
    let saved = app.put_json(&format!("/api/applications/{}", s.client_id), &input).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", String::from_utf8_lossy(&saved.body));
    let with_app = app
        .get(&format!("/api/users/{}/what-if?application_id={}", carol.id, s.client_id))
        .await
        .assert_status(StatusCode::OK)
        .json();
    assert_eq!(with_app["status"], "requires_enrollment", "{with_app}");
    assert_eq!(
        (with_app["application"]["verdict"].as_str(), with_app["application"]["min_strength"].as_str()),
        (Some("enroll"), Some("app")),
        "the authorization request would lead carol to enrol: {with_app}"
    );
    assert_eq!(with_app["policy"]["decided_by"], "application", "{with_app}");
    assert_eq!(with_app["policy"]["required_strength"], "app", "{with_app}");
    let trace = with_app["policy"]["trace"].to_string();
    assert!(trace.contains("\\\"Wiki\\\""), "the trace names the application: {trace}");
    let plain = app.get(&format!("/api/users/{}/what-if", carol.id)).await.json();
    assert_eq!(plain["status"], "signed_in", "outside Wiki nothing changed: {plain}");
    // An application of another scope is unknown to this user's what-if.
    let host_app = app
        .post_json(
            "/api/host/applications",
            &json!({"name": "Intranet", "client_type": "confidential", "redirect_uris": [REDIRECT],
                "allowed_scopes": ["openid"], "first_party": true}),
        )
        .await
        .assert_status(StatusCode::CREATED)
        .json();
    let other = host_app["application"]["client_id"].as_str().unwrap();
    let resp = app.get(&format!("/api/users/{}/what-if?application_id={other}", carol.id)).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
}

/// An application that names only a strength asks for a second factor of it (the
/// authorization endpoint parks the request for enrolment), and the what-if says the
/// same rather than letting the user's switch decide.
#[tokio::test]
async fn a_strength_alone_is_a_requirement_at_the_endpoint_and_in_the_what_if() {
    let s = setup(false, json!({ "min_strength": "app" })).await;
    let carol = s.app.create_tenant_user(&s.tenant, "carol", PASSWORD).await;
    let what = s
        .app
        .get(&format!("/api/users/{}/what-if?application_id={}", carol.id, s.client_id))
        .await
        .assert_status(StatusCode::OK)
        .json();
    assert_eq!(
        (what["status"].as_str(), what["policy"]["decided_by"].as_str()),
        (Some("requires_enrollment"), Some("application")),
        "{what}"
    );
    let browser = Browser::new(&s.app);
    browser.sign_in(Some("acme"), "carol").await;
    let url = format!(
        "{}/oauth2/authorize?response_type=code&scope=openid&client_id={}&redirect_uri={}",
        s.issuer,
        s.client_id,
        urlencode(REDIRECT)
    );
    let handle = browser.location(&url).await.split("request=").nth(1).expect("parked").to_owned();
    let need = browser.resume(&handle).await;
    assert_eq!((need["next"].as_str(), need["min_strength"].as_str()), (Some("enroll"), Some("app")), "{need}");
    // The preview reads a proposed strength alone the same way.
    let preview = s
        .app
        .post_json(&format!("/api/applications/{}/preview", s.client_id), &json!({ "min_strength": "app" }))
        .await
        .assert_status(StatusCode::OK)
        .json();
    assert_eq!(preview["newly_required"], 0, "already asked of everyone: {preview}");
    let preview = s
        .app
        .post_json(&format!("/api/applications/{}/preview", s.client_id), &json!({}))
        .await
        .assert_status(StatusCode::OK)
        .json();
    assert_eq!(preview["no_longer_required"], 2, "alice and carol: {preview}");
}

/// A user with no second factor, signing in to an application that requires one, is
/// led through enrolment inside the application's sign-in: the authenticator confirmed
/// with its first code is the session's proof, so the request completes at once with a
/// code: no detour through the account page, no second code.
#[tokio::test]
async fn enrolment_inside_an_applications_sign_in_completes_the_request() {
    let app = TestApp::spawn_with(crate::helpers::Options { manual_clock: true, ..Default::default() }).await;
    app.sign_in_admin().await;
    let s = setup_on(app, false, json!({ "require_two_factor": true })).await;
    s.app.create_tenant_user(&s.tenant, "carol", PASSWORD).await;
    let browser = Browser::new(&s.app);
    let url = format!(
        "{}/oauth2/authorize?response_type=code&scope=openid&client_id={}&redirect_uri={}&state=e",
        s.issuer,
        s.client_id,
        urlencode(REDIRECT)
    );
    let handle = browser.location(&url).await.split("request=").nth(1).expect("parked").to_owned();
    browser.sign_in(Some("acme"), "carol").await;
    let need = browser.resume(&handle).await;
    assert_eq!((need["next"].as_str(), need["min_strength"].as_str()), (Some("enroll"), Some("out_of_band")), "{need}");
    let (status, started) = browser.post("/api/account/authenticator", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let secret = started["secret"].as_str().expect("secret").to_owned();
    // A wrong first code enrols nothing and the request still waits for enrolment.
    let (status, _) = browser
        .post("/api/account/authenticator/confirm", &json!({ "code": crate::flows::wrong_totp(&s.app, &secret) }))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(browser.resume(&handle).await["next"], "enroll");
    let code = crate::flows::totp_now(&s.app, &secret);
    let (status, confirmed) = browser.post("/api/account/authenticator/confirm", &json!({ "code": code })).await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");
    let done = browser.resume(&handle).await;
    assert_eq!(done["next"], "redirect", "{done}");
    let to = done["redirect_to"].as_str().expect("redirect_to");
    let q = query_of(to);
    assert!(to.starts_with(REDIRECT) && q.contains_key("code"), "{to}");
    assert_eq!(q["state"], "e");
}
