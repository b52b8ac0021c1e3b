-- The OpenID Connect provider (PostgreSQL): applications, signing keys, authorization
-- requests and codes, token families with their refresh tokens, and consent grants.
-- Every secret a client or a browser holds (client secret, code, refresh token,
-- request handle) is stored only as a hash; signing keys are encrypted at rest.

-- When the session last proved a second factor, and which: an application's rule
-- (`min_strength`, `max_age`) is checked against these. Kept apart from
-- `reauthenticated_at`, which only a password-and-factor check may set: a step-up for
-- an application proves the factor alone and must not open sensitive account changes.
ALTER TABLE sessions ADD COLUMN second_factor_at BIGINT;
ALTER TABLE sessions ADD COLUMN second_factor_method TEXT;
-- The session's public id: the `sid` claim of ID tokens, and what an RP-initiated
-- logout with an ID token hint ends (the session cookie is SameSite=Strict and does not
-- come along on a navigation from another site). Sessions from before get one on
-- their first authorization.
ALTER TABLE sessions ADD COLUMN sid TEXT;
CREATE INDEX sessions_sid ON sessions (sid);

CREATE TABLE oidc_applications (
    -- Also the client_id.
    id TEXT PRIMARY KEY,
    -- 'host' or a tenant id: the application signs in that scope's users only.
    scope_key TEXT NOT NULL,
    name TEXT NOT NULL,
    client_type TEXT NOT NULL CHECK (client_type IN ('confidential', 'public')),
    -- Keyed hash of the client secret (confidential clients); shown once.
    secret_hash TEXT,
    -- JSON arrays of exact URIs.
    redirect_uris TEXT NOT NULL,
    post_logout_redirect_uris TEXT NOT NULL,
    -- Space-separated subset of: openid profile email phone offline_access.
    allowed_scopes TEXT NOT NULL,
    first_party BIGINT NOT NULL CHECK (first_party IN (0, 1)),
    require_two_factor BIGINT NOT NULL CHECK (require_two_factor IN (0, 1)),
    min_strength TEXT CHECK (min_strength IN ('out_of_band', 'app', 'phishing_resistant')),
    max_age_seconds BIGINT CHECK (max_age_seconds > 0),
    -- The algorithm of this application's ID and access tokens.
    token_alg TEXT NOT NULL CHECK (token_alg IN ('RS256', 'ES256')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CHECK ((client_type = 'confidential') = (secret_hash IS NOT NULL))
);
CREATE INDEX oidc_applications_scope ON oidc_applications (scope_key, id);

CREATE TABLE oidc_signing_keys (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL CHECK (alg IN ('RS256', 'ES256')),
    -- DER (PKCS#1 for RSA, PKCS#8 for EC) encrypted with the secret key, associated
    -- data 'oidc-signing-key:{kid}'.
    private_key TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Published in the JWKS from creation, used for signing from not_before on.
    not_before BIGINT NOT NULL,
    -- Set when a newer key takes over: kept in the JWKS until the tokens it signed
    -- have expired, then deleted.
    retire_after BIGINT
);

-- An authorization request waiting for the browser to sign in, step up or consent.
CREATE TABLE oidc_auth_requests (
    handle_hash TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES oidc_applications(id) ON DELETE CASCADE,
    -- The validated request (redirect URI, scopes, state, nonce, PKCE, prompt, max_age,
    -- acr_values, login_hint) as JSON.
    params TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    completed_at BIGINT
);
CREATE INDEX oidc_auth_requests_expires ON oidc_auth_requests (expires_at);

CREATE TABLE oidc_grants (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    application_id TEXT NOT NULL REFERENCES oidc_applications(id) ON DELETE CASCADE,
    -- The scopes the user consented to (or the first-party application received).
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    UNIQUE (user_id, application_id)
);

CREATE TABLE oidc_authorization_codes (
    code_hash TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES oidc_applications(id) ON DELETE CASCADE,
    grant_id TEXT NOT NULL REFERENCES oidc_grants(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    redirect_uri TEXT NOT NULL,
    scopes TEXT NOT NULL,
    -- S256 only; plain is refused.
    code_challenge TEXT,
    nonce TEXT,
    -- The session's public id (sid) and what the sign-in proved.
    sid TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    amr TEXT NOT NULL,
    acr TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    -- The token family the first exchange created: a replay revokes it.
    family_id TEXT
);
CREATE INDEX oidc_authorization_codes_expires ON oidc_authorization_codes (expires_at);

-- What one code exchange started: its access tokens carry the family id, and every
-- refresh token rotated from it belongs to it. Revoking the family ends them all.
CREATE TABLE oidc_token_families (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES oidc_applications(id) ON DELETE CASCADE,
    grant_id TEXT NOT NULL REFERENCES oidc_grants(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    scopes TEXT NOT NULL,
    sid TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    amr TEXT NOT NULL,
    acr TEXT NOT NULL,
    -- The user's security stamp at the exchange: a password or factor change ends the
    -- family's refresh and access tokens as it ends sessions.
    security_stamp TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_reason TEXT
);
CREATE INDEX oidc_token_families_grant ON oidc_token_families (grant_id);
CREATE INDEX oidc_token_families_expires ON oidc_token_families (expires_at);

CREATE TABLE oidc_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id TEXT NOT NULL REFERENCES oidc_token_families(id) ON DELETE CASCADE,
    application_id TEXT NOT NULL REFERENCES oidc_applications(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- Set on rotation: presenting a used refresh token again revokes the family.
    used_at BIGINT
);
CREATE INDEX oidc_refresh_tokens_family ON oidc_refresh_tokens (family_id);
