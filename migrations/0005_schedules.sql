-- Schedules (issue 7): "at these times, in this zone, set these pools' min, max or target".
--
-- `since` is when the current definition took effect and `last_fired_at` the scheduled
-- instant of the last firing applied: a schedule owes the latest firing after both, so a
-- restarted daemon applies the one it missed, once. `last_applied_at` is when that happened
-- and `last_outcome` what it did, for GET /v1/schedules.
CREATE TABLE schedules (
    name            TEXT PRIMARY KEY NOT NULL,
    spec            TEXT NOT NULL,                -- ScheduleSpec as JSON
    since           INTEGER NOT NULL,
    last_fired_at   INTEGER,
    last_applied_at INTEGER,
    last_outcome    TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
