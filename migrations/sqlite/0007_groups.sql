-- Groups below the scope (DESIGN.md section 5): each scope (the host or one tenant) may
-- define groups; a user belongs to any number of groups of their own scope, and a group
-- may carry a 2FA rule. Numbered 0007 because 0006 is taken by the OpenID Connect work.
-- The table is not called "groups": GROUPS is a keyword (window frames) in both databases.

CREATE TABLE user_groups (
    id TEXT PRIMARY KEY,
    -- 'host' or a tenant id, as users.scope_key.
    scope_key TEXT NOT NULL,
    name TEXT NOT NULL,
    -- The name folded to lower case: names are unique in a scope, ignoring case.
    name_key TEXT NOT NULL,
    -- The rule; 0 and NULL together mean the group carries none.
    require_two_factor INTEGER NOT NULL DEFAULT 0 CHECK (require_two_factor IN (0, 1)),
    min_strength TEXT CHECK (min_strength IS NULL OR min_strength IN ('out_of_band', 'app', 'phishing_resistant')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX user_groups_scope_name ON user_groups (scope_key, name_key);
-- The target of the membership's foreign key below, which pins a member to the group's scope.
CREATE UNIQUE INDEX user_groups_id_scope ON user_groups (id, scope_key);
CREATE UNIQUE INDEX users_id_scope ON users (id, scope_key);

-- A user's membership of a group. scope_key appears in both foreign keys, so the
-- database itself refuses a member from another scope than the group's.
CREATE TABLE user_group_members (
    group_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    scope_key TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id),
    FOREIGN KEY (group_id, scope_key) REFERENCES user_groups (id, scope_key) ON DELETE CASCADE,
    FOREIGN KEY (user_id, scope_key) REFERENCES users (id, scope_key) ON DELETE CASCADE
);
-- Resolution reads a user's groups on every sign-in.
CREATE INDEX user_group_members_user ON user_group_members (user_id);

-- The adoption view shows each user's last sign-in and the factor it used; sessions
-- expire and are purged, so the user row keeps it.
ALTER TABLE users ADD COLUMN last_sign_in_at INTEGER;
ALTER TABLE users ADD COLUMN last_sign_in_methods TEXT;
