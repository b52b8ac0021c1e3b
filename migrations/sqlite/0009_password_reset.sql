-- Password reset: single-use links, and passwords an admin set that must be changed.

CREATE TABLE password_resets (
    -- SHA-256 of the link's token: a leaked table yields no usable link.
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- 'self' for a link the user asked for, else the id of the admin who issued it.
    issued_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX password_resets_user ON password_resets (user_id);
CREATE INDEX password_resets_expires ON password_resets (expires_at);

-- Set when an admin gave the user a temporary password (or the first admin's password
-- was generated): until the user picks their own, a session can do nothing else.
ALTER TABLE users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0 CHECK (must_change_password IN (0, 1));
