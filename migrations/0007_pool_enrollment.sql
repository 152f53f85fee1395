-- Bootstrap on Batch pools (issue 7): one start task serves every node of a Batch pool and is
-- readable by anyone who can read the pool, so it carries only an enrollment token. A node
-- presents it once, to trade it for its own node token and script. Only the SHA-256 hex of
-- the token is kept; it goes with its pool.
CREATE TABLE pool_enroll_tokens (
    pool       TEXT PRIMARY KEY NOT NULL REFERENCES pools (name) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) STRICT;
