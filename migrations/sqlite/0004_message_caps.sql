-- Caps on emails and texts per scope and overall, and the countries texts may go to
-- (SQLite). Same portable types as 0001: Unix milliseconds for times.

-- Messages sent per scope ('host', a tenant id, or '*' for every scope together),
-- channel and clock hour. A send increments its scope's row and the '*' row in the
-- transaction that stores its code, and only while both are under their caps, so the
-- caps hold across every node of a deployment.
CREATE TABLE message_counts (
    scope_key TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
    -- The start of the clock hour (UTC), Unix milliseconds.
    hour_start INTEGER NOT NULL,
    sent INTEGER NOT NULL,
    PRIMARY KEY (scope_key, channel, hour_start)
);
CREATE INDEX message_counts_hour ON message_counts (hour_start);

-- Country calling codes whose numbers may receive texts, comma-separated ('1,44');
-- empty allows every country.
ALTER TABLE scope_settings ADD COLUMN sms_country_codes TEXT NOT NULL DEFAULT '';
