-- What a user's effective policy is read from, besides the scope's settings and feature:
-- their scope, their own 2FA switch, and the rules of the groups they belong to. Every
-- node keeps these in memory (server/src/cache.rs) for as long as it keeps settings,
-- which is only safe if every node hears of every change to them, whoever makes it:
-- another node, an operator's statement, a cascade. So the database announces each
-- change itself, on the channel the nodes already listen to (server/src/changes.rs),
-- and PostgreSQL delivers the notice when the changing transaction commits (one notice
-- a transaction: identical payloads are folded). Only these columns fire the triggers:
-- a sign-in, which updates other columns of the user row, announces nothing.
CREATE FUNCTION twofold_subjects_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('twofold_changes', 'subjects');
    RETURN NULL;
END;
$$;

CREATE TRIGGER users_subject_changed AFTER UPDATE OF scope_key, tenant_id, two_factor_enabled ON users
    FOR EACH ROW
    WHEN (OLD.scope_key IS DISTINCT FROM NEW.scope_key OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id
        OR OLD.two_factor_enabled IS DISTINCT FROM NEW.two_factor_enabled)
    EXECUTE FUNCTION twofold_subjects_changed();
CREATE TRIGGER users_subject_deleted AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION twofold_subjects_changed();
CREATE TRIGGER members_subject_changed AFTER INSERT OR UPDATE OR DELETE ON user_group_members
    FOR EACH ROW EXECUTE FUNCTION twofold_subjects_changed();
CREATE TRIGGER groups_subject_changed AFTER UPDATE OF scope_key, name, name_key, require_two_factor, min_strength
    ON user_groups
    FOR EACH ROW
    WHEN (OLD.scope_key IS DISTINCT FROM NEW.scope_key OR OLD.name IS DISTINCT FROM NEW.name
        OR OLD.name_key IS DISTINCT FROM NEW.name_key OR OLD.require_two_factor IS DISTINCT FROM NEW.require_two_factor
        OR OLD.min_strength IS DISTINCT FROM NEW.min_strength)
    EXECUTE FUNCTION twofold_subjects_changed();
CREATE TRIGGER groups_subject_deleted AFTER DELETE ON user_groups
    FOR EACH ROW EXECUTE FUNCTION twofold_subjects_changed();
