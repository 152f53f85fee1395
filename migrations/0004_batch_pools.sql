-- Batch pools: what the controller last saw of each `mode: batch` pool's Azure Batch pool,
-- and the bookkeeping the Batch planner needs between activations. Written only by the
-- controller; the API reads it for the what-if plan. Goes with its pool (Store::remove_pool).
--
-- Batch nodes themselves live in `vms` (name = the Batch node id, power_state = the Batch
-- node state), so heartbeats, drain and `GET /v1/nodes` work for them unchanged.
CREATE TABLE batch_pools (
    pool             TEXT PRIMARY KEY NOT NULL REFERENCES pools (name),
    -- NULL until the first complete observation: nothing is planned before it.
    observed_at      INTEGER,
    -- JSON rb_core::BatchPoolView; NULL when Azure has no such Batch pool.
    observed         TEXT,
    -- The account's data-plane endpoint, from the management plane.
    account_endpoint TEXT,
    -- Since when the pool has had no nodes and zero targets (auto lifecycle).
    empty_since      INTEGER,
    -- resizeOperationStatus.startTime whose errors were already reported.
    reported_resize  TEXT,
    -- JSON [rb_core::Unavailable]: this pool's offerings Batch could not allocate lately.
    unavailable      TEXT NOT NULL DEFAULT '[]',
    -- Preemptions seen since the pool was created in renderburst.
    preempted_total  INTEGER NOT NULL DEFAULT 0 CHECK (preempted_total >= 0)
) STRICT;
