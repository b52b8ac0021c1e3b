-- Twofold's foundation schema (SQLite).
-- Booleans are stored as 0/1 integers and times as Unix milliseconds in both databases:
-- the server talks to SQLite and PostgreSQL through one query layer (sqlx's Any driver),
-- which maps neither SQLite booleans nor timestamps, so both schemas keep the same
-- portable column types.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    -- The 2FA feature set by a host admin: a ceiling over the tenant's own settings.
    feature_behaviour TEXT NOT NULL DEFAULT 'optional'
        CHECK (feature_behaviour IN ('optional', 'disabled', 'forced')),
    created_at INTEGER NOT NULL
);

-- 2FA settings of a scope: 'host' or a tenant id.
CREATE TABLE scope_settings (
    scope_key TEXT PRIMARY KEY,
    behaviour TEXT NOT NULL CHECK (behaviour IN ('optional', 'disabled', 'forced')),
    users_can_change INTEGER NOT NULL CHECK (users_can_change IN (0, 1)),
    remember_browser INTEGER NOT NULL CHECK (remember_browser IN (0, 1)),
    remember_browser_days INTEGER NOT NULL CHECK (remember_browser_days BETWEEN 1 AND 365),
    enrollment_grace_days INTEGER NOT NULL CHECK (enrollment_grace_days BETWEEN 0 AND 90),
    allow_authenticator INTEGER NOT NULL CHECK (allow_authenticator IN (0, 1)),
    allow_email INTEGER NOT NULL CHECK (allow_email IN (0, 1)),
    allow_sms INTEGER NOT NULL CHECK (allow_sms IN (0, 1)),
    updated_at INTEGER NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    -- 'host' for host users, else the tenant id; NOT NULL so uniqueness of user names
    -- per scope holds for host users too.
    scope_key TEXT NOT NULL,
    tenant_id TEXT REFERENCES tenants(id),
    username TEXT NOT NULL,
    username_key TEXT NOT NULL,
    email TEXT,
    email_confirmed INTEGER NOT NULL DEFAULT 0 CHECK (email_confirmed IN (0, 1)),
    phone TEXT,
    phone_confirmed INTEGER NOT NULL DEFAULT 0 CHECK (phone_confirmed IN (0, 1)),
    has_authenticator INTEGER NOT NULL DEFAULT 0 CHECK (has_authenticator IN (0, 1)),
    password_hash TEXT NOT NULL,
    two_factor_enabled INTEGER NOT NULL DEFAULT 0 CHECK (two_factor_enabled IN (0, 1)),
    security_stamp TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    CHECK ((scope_key = 'host' AND tenant_id IS NULL) OR scope_key = tenant_id)
);
CREATE UNIQUE INDEX users_scope_username ON users (scope_key, username_key);

CREATE TABLE role_assignments (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('host_admin', 'tenant_admin')),
    scope_key TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, role, scope_key)
);

CREATE TABLE sessions (
    -- SHA-256 of the token: a leaked table does not yield usable cookies.
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    security_stamp TEXT NOT NULL,
    -- How the session was established, e.g. 'pwd' or 'pwd+otp'; later steps such as
    -- reauthentication read it.
    auth_methods TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    user_agent TEXT,
    client_ip TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE audit_events (
    -- UUIDv7: time-ordered, so "newest first" is an index scan on the key.
    id TEXT PRIMARY KEY,
    at INTEGER NOT NULL,
    actor_user_id TEXT,
    scope_key TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT
);
CREATE INDEX audit_scope_id ON audit_events (scope_key, id);
