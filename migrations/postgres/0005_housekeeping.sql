-- Housekeeping (PostgreSQL) deletes rows past their expiry (and audit events past their retention)
-- in small batches; without these indexes each batch would scan the whole table.
CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE INDEX sign_in_attempts_expires ON sign_in_attempts (expires_at);
CREATE INDEX one_time_codes_expires ON one_time_codes (expires_at);
CREATE INDEX remembered_browsers_expires ON remembered_browsers (expires_at);
CREATE INDEX audit_events_at ON audit_events (at);
