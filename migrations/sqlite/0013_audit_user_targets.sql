-- The audit trail is searched by target only for users (`target = 'user:<id>'`: the
-- audit search's "about this user" filter, and the erasure of a deleted user's personal
-- data). Events about anything else (a scope's settings, an application, a group) were
-- indexed by target too, and every such insert wrote an index leaf of its own: a
-- settings write lands on its scope's part of the index, so across ten thousand tenants
-- each write changed one more page that no other write shared. Only users' targets are
-- indexed now; the searches repeat the index's condition word for word, which is how
-- both databases know the partial index answers them.
DROP INDEX audit_events_target;
CREATE INDEX audit_events_user_target ON audit_events (target) WHERE substr(target, 1, 5) = 'user:';
