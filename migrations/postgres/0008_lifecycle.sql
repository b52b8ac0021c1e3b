-- The account lifecycle: deactivated users, suspended tenants, and sessions that can
-- be listed and ended one by one.

-- Set while an admin has deactivated the user: sign-in is refused and no session works.
ALTER TABLE users ADD COLUMN deactivated_at BIGINT;
-- Set while a host admin has suspended the tenant: none of its users can sign in.
ALTER TABLE tenants ADD COLUMN suspended_at BIGINT;
-- A public id for a session, so it can be listed and ended without exposing the hash
-- its cookie is looked up by.
ALTER TABLE sessions ADD COLUMN id TEXT;
UPDATE sessions SET id = md5(random()::text || token_hash) WHERE id IS NULL;
CREATE UNIQUE INDEX sessions_id ON sessions (id);
