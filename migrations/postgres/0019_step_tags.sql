-- What lets any node verify an authenticator code in one statement (PostgreSQL only;
-- SQLite's verification runs in the server's own process). The password step, which
-- decrypts the authenticator's secret for a moment anyway, stores a keyed tag of the
-- code each time step of the sign-in's life accepts, so a verification sends the tags
-- of the typed code and the statement finds the step without the node reading the
-- secret first. A tag is an HMAC under a key derived from `secret_key` (named by
-- `code_tags_key`) of the sign-in's token hash, the step and that step's code: a leaked
-- table gives no code. `code_secret` is the SHA-256 of the stored secret the tags were
-- computed from, so an authenticator replaced since is noticed.
ALTER TABLE sign_in_attempts
    -- 16-byte tags in lowercase hex, one per step from `code_tags_from` on.
    ADD COLUMN code_tags TEXT,
    ADD COLUMN code_tags_from BIGINT,
    ADD COLUMN code_tags_key TEXT,
    ADD COLUMN code_secret TEXT;
