-- The client address of the request that caused an audit event (absent for events
-- from operator commands and background work), so the trail can be searched by it.
ALTER TABLE audit_events ADD COLUMN client_ip TEXT;
CREATE INDEX audit_events_actor ON audit_events (actor_user_id);
CREATE INDEX audit_events_target ON audit_events (target);
