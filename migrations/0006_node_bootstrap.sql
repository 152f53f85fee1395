-- Node bootstrap (issue 7): every VM of a pool with a `bootstrap` section gets its own token,
-- generated when its create is executed and put into its customData. Only the SHA-256 hex
-- of the token is kept. The token goes with its VM's inventory row.
CREATE TABLE node_tokens (
    node       TEXT PRIMARY KEY NOT NULL REFERENCES vms (name) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) STRICT;

-- Written by the node API (register, heartbeats with the node's own token), never by the
-- controller's inventory upsert, like last_heartbeat.
ALTER TABLE vms ADD COLUMN registered_at INTEGER;   -- first POST /v1/nodes/{name}/register
ALTER TABLE vms ADD COLUMN node_seen_at INTEGER;    -- last call the node made with its token
