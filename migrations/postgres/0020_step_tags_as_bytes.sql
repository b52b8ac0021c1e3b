-- The tags of 0019 as raw bytes, 8 to a step instead of 32 hex digits, and the
-- secret's digest likewise: a pending sign-in's row is written again when it
-- completes, and every byte of it goes to the write-ahead log both times (BENCHMARKS.md,
-- "Any node verifies in one statement"). Tags already stored are dropped: their sign-ins
-- are verified the general way, as those opened before 0019 are.
ALTER TABLE sign_in_attempts
    ALTER COLUMN code_tags TYPE BYTEA USING NULL,
    ALTER COLUMN code_secret TYPE BYTEA USING NULL;
