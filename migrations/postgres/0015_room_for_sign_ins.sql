-- Room on each page of the rows every sign-in updates: a user row twice (the attempt
-- counted, then the sign-in recorded) and the authenticator once (its time step used).
-- An update whose new version fits on the old one's page, and which changes no indexed
-- column, is heap-only: no index is touched and no other page is written. On full pages
-- the first update of each user row went through all three of the table's indexes and
-- every step used went through the authenticators' (at a million users, half of the
-- users' updates and none of the authenticators' were heap-only). A tenth of each page
-- holds two more versions of a user row, four of an authenticator. Applies to pages
-- written from now on; `VACUUM FULL users, authenticators` (which locks both tables
-- while it rewrites them) gives existing rows the room too.
ALTER TABLE users SET (fillfactor = 90);
ALTER TABLE authenticators SET (fillfactor = 90);
