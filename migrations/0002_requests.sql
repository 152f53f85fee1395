-- Node requests (leases): a render manager asks for `count` nodes of a pool until
-- `expires_at` or until it releases them. A request is live while released_at IS NULL and
-- expires_at > now; the desired count adds up the live rows of a pool at planning time, so an
-- expired request stops counting without anyone writing anything.
--
-- Rows are history once they end (released or expired) and are pruned after a while
-- (Store::prune_requests). They go with their pool (Store::remove_pool).
CREATE TABLE requests (
    id          TEXT PRIMARY KEY NOT NULL,        -- UUID v4, lower-case, hyphenated
    pool        TEXT NOT NULL REFERENCES pools (name),
    count       INTEGER NOT NULL CHECK (count > 0),
    requester   TEXT NOT NULL,
    job         TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL CHECK (expires_at > created_at),
    released_at INTEGER,
    released_by TEXT,
    CHECK ((released_at IS NULL) = (released_by IS NULL))
) STRICT;

-- The live sum of one pool: unreleased rows by expiry.
CREATE INDEX requests_live ON requests (pool, expires_at) WHERE released_at IS NULL;
