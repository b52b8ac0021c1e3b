-- A foreign key's check locks the row it finds (FOR KEY SHARE) until the inserting
-- transaction ends, and when transactions that overlap lock the same row PostgreSQL
-- records them together in a new multixact each time: pages of its own logs written and
-- read, more write-ahead log, the row's page dirtied again. An application's row is
-- locked so by every code exchanged for it (the spent code and the token family both
-- pointed at it), every refresh token issued to it and every authorization request for
-- it; a user's and a grant's rows by each of their exchanges. Under concurrent exchanges
-- for one application that was most of what the token endpoint cost PostgreSQL
-- (BENCHMARKS.md, "Foreign keys that lock a shared row").
--
-- What the keys guaranteed stays, through one key per row that names no shared row:
--
-- * A token family points at its grant together with the grant's application and
--   user, so the three agree, and deleting the grant (a revocation, or the deletion of
--   its application or user, which cascades to their grants) deletes the family. The
--   check locks the grant's row alone, whose only writers are its own user's sign-ins,
--   and it is still what refuses an exchange racing the grant's revocation: the
--   revocation waits for the exchange and then deletes its family, or the exchange
--   finds the grant gone.
-- * A refresh token points at its family, which holds its application.
-- * A spent code is a marker against replay that housekeeping deletes once the code
--   has expired. The trigger below deletes a grant's markers with the grant, as the
--   keys' cascades did: an exchange's marker is written by the statement that checks
--   the family's key, so a deletion of the grant waits for the exchange and then sees
--   its marker.
-- * An authorization request lives minutes; deleting its application deletes its
--   requests first (`delete_application`), and one written while the application was
--   being deleted finds no application when it is completed, then expires.
--
-- SQLite keeps its keys: its one writer takes no row locks.

ALTER TABLE oidc_grants ADD CONSTRAINT oidc_grants_id_application_user UNIQUE (id, application_id, user_id);

ALTER TABLE oidc_token_families
    DROP CONSTRAINT oidc_token_families_application_id_fkey,
    DROP CONSTRAINT oidc_token_families_grant_id_fkey,
    DROP CONSTRAINT oidc_token_families_user_id_fkey,
    ADD CONSTRAINT oidc_token_families_grant FOREIGN KEY (grant_id, application_id, user_id)
        REFERENCES oidc_grants (id, application_id, user_id) ON DELETE CASCADE;

ALTER TABLE oidc_refresh_tokens DROP CONSTRAINT oidc_refresh_tokens_application_id_fkey;

ALTER TABLE oidc_authorization_codes
    DROP CONSTRAINT oidc_authorization_codes_application_id_fkey,
    DROP CONSTRAINT oidc_authorization_codes_grant_id_fkey,
    DROP CONSTRAINT oidc_authorization_codes_user_id_fkey;

ALTER TABLE oidc_auth_requests DROP CONSTRAINT oidc_auth_requests_application_id_fkey;

CREATE FUNCTION twofold_grants_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM oidc_authorization_codes c USING gone WHERE c.grant_id = gone.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER oidc_grants_spent_codes AFTER DELETE ON oidc_grants
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION twofold_grants_deleted();
