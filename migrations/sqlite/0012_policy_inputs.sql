-- What a user's effective policy is read from, besides the scope's settings and feature:
-- their scope, their own 2FA switch, and the rules of the groups they belong to. A
-- server keeps these in memory (server/src/cache.rs) for as long as it keeps settings,
-- which is only safe if it hears of every change to them, whoever makes it: another
-- `twofold` process on the same file, an operator's statement, a cascade. So the
-- database counts the changes itself, in the changing statement's own transaction, and
-- each server polls the count (a change is seen within a tenth of a second). Only
-- these columns move it: a sign-in, which updates other columns of the user row, does
-- not.
CREATE TABLE subject_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n INTEGER NOT NULL
);
INSERT INTO subject_version (id, n) VALUES (1, 0);

CREATE TRIGGER users_subject_changed AFTER UPDATE OF scope_key, tenant_id, two_factor_enabled ON users
    WHEN OLD.scope_key IS NOT NEW.scope_key OR OLD.tenant_id IS NOT NEW.tenant_id
        OR OLD.two_factor_enabled IS NOT NEW.two_factor_enabled
BEGIN
    UPDATE subject_version SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER users_subject_deleted AFTER DELETE ON users
BEGIN
    UPDATE subject_version SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER members_subject_added AFTER INSERT ON user_group_members
BEGIN
    UPDATE subject_version SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER members_subject_changed AFTER UPDATE ON user_group_members
BEGIN
    UPDATE subject_version SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER members_subject_removed AFTER DELETE ON user_group_members
BEGIN
    UPDATE subject_version SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER groups_subject_changed AFTER UPDATE OF scope_key, name, name_key, require_two_factor, min_strength
    ON user_groups
    WHEN OLD.scope_key IS NOT NEW.scope_key OR OLD.name IS NOT NEW.name OR OLD.name_key IS NOT NEW.name_key
        OR OLD.require_two_factor IS NOT NEW.require_two_factor OR OLD.min_strength IS NOT NEW.min_strength
BEGIN
    UPDATE subject_version SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER groups_subject_deleted AFTER DELETE ON user_groups
BEGIN
    UPDATE subject_version SET n = n + 1 WHERE id = 1;
END;

-- The same columns, read by id for every effective-policy read that misses the
-- server's memory: held in an index of their own, that read never descends the table's
-- B-tree, whose leaves (whole user rows) are rarely in memory at a million users.
CREATE INDEX users_policy_inputs ON users (id, tenant_id, two_factor_enabled);
