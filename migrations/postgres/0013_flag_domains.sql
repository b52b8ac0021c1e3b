-- Every sign-in updates its user row twice (the attempt counted, then the sign-in
-- recorded), its pending attempt and the factor it used. On each UPDATE, PostgreSQL
-- checks every CHECK constraint of the table, and first parses and plans each one's
-- expression again for the statement (an eighth of PostgreSQL's time in the verify
-- step's profile). A domain's constraint is checked only where a value is assigned to
-- it, and is prepared once per connection, so the flags these statements never set
-- cost nothing: an update of a user row took about 15 µs less (BENCHMARKS.md). Rows
-- keep the same values and the same guarantees; the drivers still see BIGINT and TEXT
-- (PostgreSQL describes a domain's column by its base type).
CREATE DOMAIN flag AS BIGINT CHECK (VALUE IN (0, 1));
CREATE DOMAIN sign_in_stage AS TEXT CHECK (VALUE IN ('second_factor', 'enrollment'));

ALTER TABLE users
    DROP CONSTRAINT users_email_confirmed_check,
    DROP CONSTRAINT users_phone_confirmed_check,
    DROP CONSTRAINT users_has_authenticator_check,
    DROP CONSTRAINT users_two_factor_enabled_check,
    DROP CONSTRAINT users_must_change_password_check,
    ALTER COLUMN email_confirmed TYPE flag,
    ALTER COLUMN phone_confirmed TYPE flag,
    ALTER COLUMN has_authenticator TYPE flag,
    ALTER COLUMN two_factor_enabled TYPE flag,
    ALTER COLUMN must_change_password TYPE flag;
ALTER TABLE authenticators
    DROP CONSTRAINT authenticators_confirmed_check,
    ALTER COLUMN confirmed TYPE flag;
ALTER TABLE passkeys
    DROP CONSTRAINT passkeys_backup_eligible_check,
    DROP CONSTRAINT passkeys_backup_state_check,
    ALTER COLUMN backup_eligible TYPE flag,
    ALTER COLUMN backup_state TYPE flag;
ALTER TABLE sign_in_attempts
    DROP CONSTRAINT sign_in_attempts_stage_check,
    ALTER COLUMN stage TYPE sign_in_stage;

-- Room on each page for the new version of an updated row, so that an update changing
-- no indexed column stays on its page (a heap-only tuple) and touches no index. A
-- pending sign-in is written once and completed once: with full pages one completion in
-- seven went through all four indexes of the table, with this room one in twenty.
ALTER TABLE sign_in_attempts SET (fillfactor = 85);
