-- A pool's backoff after failed writes (issue 13), which lived only in controller memory: a
-- restart retried at once (a full attempt) and a crash-looping daemon retried at full speed.
-- One row per pool and kind of write whose failure streak is running (`create` for VM
-- creates, `start`, `deallocate`, `delete`, `create_pool` and `resize_pool` for Batch...);
-- the row goes when a write of that kind succeeds, and with the pool.
CREATE TABLE pool_backoff (
    pool       TEXT NOT NULL REFERENCES pools (name) ON DELETE CASCADE,
    kind       TEXT NOT NULL,                      -- the ActionKind held (snake_case)
    streak     INTEGER NOT NULL CHECK (streak >= 1), -- failed attempts in a row
    until      INTEGER NOT NULL,                   -- writes of this kind held until then
    permanent  INTEGER NOT NULL CHECK (permanent IN (0, 1)), -- the pool is Blocked
    code       TEXT NOT NULL,                      -- the last failure's ARM error code
    condition  TEXT NOT NULL,                      -- "Blocked: ..." or "BackingOff: ..."
    generation INTEGER NOT NULL,                   -- the pool's generation at the last failure
    open       INTEGER NOT NULL CHECK (open IN (0, 1)), -- the admin changed the pool since
    since      INTEGER NOT NULL,                   -- when the condition's type appeared
    PRIMARY KEY (pool, kind)
) STRICT;

-- Node names reserved for VM creates that failed definitely, reused by the next creates so
-- failures never burn names (they were in memory: a restart burned them).
CREATE TABLE pool_reusable_names (
    pool TEXT NOT NULL REFERENCES pools (name) ON DELETE CASCADE,
    node TEXT NOT NULL,
    PRIMARY KEY (pool, node)
) STRICT;
