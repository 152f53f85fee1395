-- Enrollment (issue 12). A Batch pool's enrollment token rotates: the start task gets a new
-- one through ARM and the one it replaced keeps working for an overlap, so a pool has several
-- tokens at once, each with the time it stops working. Only SHA-256 hex is kept, as before.
CREATE TABLE pool_enroll_keys (
    token_hash TEXT PRIMARY KEY NOT NULL,
    pool       TEXT NOT NULL REFERENCES pools (name) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    -- NULL while it is the start task's token, or about to be (a rotation in flight).
    expires_at INTEGER
) STRICT;
CREATE INDEX pool_enroll_keys_by_pool ON pool_enroll_keys (pool);
INSERT INTO pool_enroll_keys (token_hash, pool, created_at, expires_at)
    SELECT token_hash, pool, created_at, NULL FROM pool_enroll_tokens;
DROP TABLE pool_enroll_tokens;

-- A Batch node may enroll only until this time (its allocation plus
-- `[bootstrap] enroll_window_seconds`), written by the controller when it lists the node;
-- NULL: never (not listed since this column exists, or enrolled already).
ALTER TABLE vms ADD COLUMN enroll_until INTEGER;
