-- Passkeys (WebAuthn credentials) and factor strength per scope.

-- How many passkeys a user holds, kept beside the other factor flags so that reading a
-- user says which factors they have without another query.
ALTER TABLE users ADD COLUMN passkey_count BIGINT NOT NULL DEFAULT 0;

-- Whether a scope offers passkeys, the weakest factor it accepts, and the authenticator
-- models (AAGUIDs, comma-separated; empty accepts any) it lets users enrol.
ALTER TABLE scope_settings ADD COLUMN allow_passkey BIGINT NOT NULL DEFAULT 1 CHECK (allow_passkey IN (0, 1));
ALTER TABLE scope_settings ADD COLUMN min_strength TEXT NOT NULL DEFAULT 'out_of_band';
ALTER TABLE scope_settings ADD COLUMN passkey_aaguids TEXT NOT NULL DEFAULT '';

CREATE TABLE passkeys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- The credential id (base64url), unique across users: an authenticator names one
    -- account with it.
    credential_id TEXT NOT NULL UNIQUE,
    -- XChaCha20-Poly1305 ciphertext of the serialised passkey (public key and state),
    -- bound to the passkey row's id.
    passkey_enc TEXT NOT NULL,
    name TEXT NOT NULL,
    aaguid TEXT NOT NULL,
    -- The last signature counter seen; an authenticator that counts and reports a value
    -- at or below it is a clone.
    sign_count BIGINT NOT NULL DEFAULT 0,
    backup_eligible BIGINT NOT NULL CHECK (backup_eligible IN (0, 1)),
    backup_state BIGINT NOT NULL CHECK (backup_state IN (0, 1)),
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX passkeys_user ON passkeys (user_id);

-- The state of a WebAuthn ceremony between its two round trips. Single use: finishing
-- deletes the row and only the request whose DELETE removed it goes on, so a second
-- node (or a second request) presenting the same challenge is refused.
CREATE TABLE webauthn_challenges (
    id TEXT PRIMARY KEY,
    -- What the ceremony is for: 'register', 'authenticate' or 'discover'.
    purpose TEXT NOT NULL,
    -- The pending sign-in or session (by id or token hash) the ceremony belongs to;
    -- empty for a passwordless sign-in, which has none yet.
    binding TEXT NOT NULL,
    user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
    -- Ciphertext of webauthn-rs's serialised ceremony state.
    state_enc TEXT NOT NULL,
    -- The name the user gave a passkey being registered.
    name TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX webauthn_challenges_expiry ON webauthn_challenges (expires_at);

-- The strength of the second factor a browser was remembered with; browsers remembered
-- before strengths were recorded only ever skipped where any factor sufficed.
ALTER TABLE remembered_browsers ADD COLUMN strength TEXT NOT NULL DEFAULT 'out_of_band';
