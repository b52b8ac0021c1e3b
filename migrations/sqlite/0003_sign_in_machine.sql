-- The sign-in state machine (SQLite): escalating and permanent second-factor lockout,
-- and the strength of a session's last reauthentication.

-- Locks since the last successful second factor: each one lasts longer than the last.
ALTER TABLE users ADD COLUMN lockouts INTEGER NOT NULL DEFAULT 0;
-- Wrong second factors since the last success, across locks: at the configured limit
-- second-factor sign-in stays locked until an admin unlocks it.
ALTER TABLE users ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;

-- The factor that last made the session fresh ('password', 'authenticator', 'email',
-- 'sms', 'recovery_code'): a sensitive change needs one at least as strong as the
-- user's strongest factor.
ALTER TABLE sessions ADD COLUMN reauth_method TEXT;
