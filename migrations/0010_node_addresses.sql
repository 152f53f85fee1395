-- A node's private IP address, for `GET /v1/nodes` and `renderburst node list` (issue 13):
-- what Batch's node list says for Batch nodes, or what the node said when it registered
-- (bootstrap pools). Beside `vms` rather than in it, so the inventory upserts stay as they
-- are; it goes with its VM's row.
CREATE TABLE node_addresses (
    node       TEXT PRIMARY KEY NOT NULL REFERENCES vms (name) ON DELETE CASCADE,
    private_ip TEXT NOT NULL
) STRICT;
