-- Second factors, the pending sign-in, lockout and remembered browsers (PostgreSQL).
-- Same portable types as 0001: 0/1 integers for booleans, Unix milliseconds for times.

ALTER TABLE users ADD COLUMN second_factor_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until BIGINT;
-- When the user first signed in under a policy that required 2FA without a factor;
-- the enrolment grace period counts from here.
ALTER TABLE users ADD COLUMN enrollment_required_since BIGINT;
-- An address or number being confirmed; it replaces the current one once confirmed.
ALTER TABLE users ADD COLUMN pending_email TEXT;
ALTER TABLE users ADD COLUMN pending_phone TEXT;

-- A sign-in between the password and the session. Only the hash of its token is kept.
CREATE TABLE sign_in_attempts (
    token_hash TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- 'second_factor' or 'enrollment': the restricted state decides what may follow.
    stage TEXT NOT NULL CHECK (stage IN ('second_factor', 'enrollment')),
    security_stamp TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    last_code_sent_at BIGINT,
    codes_sent BIGINT NOT NULL DEFAULT 0,
    -- Set once, by the request that completes the sign-in; a second completion fails.
    completed_at BIGINT
);
CREATE INDEX sign_in_attempts_user ON sign_in_attempts (user_id);

-- Emailed and texted codes. Stored as keyed hashes; `used_at` makes them single use.
CREATE TABLE one_time_codes (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- What the code is for, e.g. 'sign_in_email', 'confirm_phone'.
    purpose TEXT NOT NULL,
    -- The pending sign-in (or the user, for account confirmations) it is bound to.
    binding TEXT NOT NULL,
    destination TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX one_time_codes_binding ON one_time_codes (binding, purpose);
CREATE INDEX one_time_codes_user ON one_time_codes (user_id);

CREATE TABLE authenticators (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    -- XChaCha20-Poly1305 ciphertext of the TOTP secret, bound to the user id.
    secret_enc TEXT NOT NULL,
    confirmed BIGINT NOT NULL DEFAULT 0 CHECK (confirmed IN (0, 1)),
    -- The last accepted time step; a step at or below it is a replay.
    last_used_step BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE recovery_codes (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX recovery_codes_user ON recovery_codes (user_id);

CREATE TABLE remembered_browsers (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    security_stamp TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    user_agent TEXT
);
CREATE INDEX remembered_browsers_user ON remembered_browsers (user_id);

-- When the session last passed a password and second-factor check, for sensitive changes.
ALTER TABLE sessions ADD COLUMN reauthenticated_at BIGINT;
