-- The account lifecycle: deactivated users, suspended tenants, and sessions that can
-- be listed and ended one by one.

-- Set while an admin has deactivated the user: sign-in is refused and no session works.
ALTER TABLE users ADD COLUMN deactivated_at BIGINT;
-- Set while a host admin has suspended the tenant: none of its users can sign in.
ALTER TABLE tenants ADD COLUMN suspended_at BIGINT;
-- Every session gets the public id (`sid`, added with OpenID Connect) the session lists
-- show, so it can be listed and ended without exposing the hash its cookie is looked up
-- by; sessions from before `sid` get a random one.
UPDATE sessions SET sid = md5(random()::text || token_hash) || md5(random()::text) WHERE sid IS NULL;
