-- Two of the audit trail's five indexes took an entry from nearly every write (a
-- sign-in, a token, a setting) and answered few searches:
--
-- * `at`, for the retention's deletes and the search's time range: an event's id is a
--   UUIDv7 made from its `at` since this migration (`db::audit_id`), so both read a
--   range of the primary key instead. Events written before it have ids from the same
--   clock.
-- * the actor's, for the search by actor: events about their actor themselves (a
--   sign-in, a change of one's own account) are in the index on users' targets, which
--   the search by actor reads for them, so they are left out of this one. The searches
--   repeat the index's condition word for word, which is how both databases know the
--   partial index answers them.
DROP INDEX audit_events_at;
DROP INDEX audit_events_actor;
CREATE INDEX audit_events_actor ON audit_events (actor_user_id) WHERE target <> 'user:' || actor_user_id;
