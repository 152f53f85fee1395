-- renderburst's initial schema. Migrations are forward-only: never edit this file once it has
-- shipped; add 0002_*.sql instead.
--
-- Conventions: timestamps are Unix seconds (INTEGER); enums are stored as their serde
-- snake_case strings; JSON documents are stored as TEXT; booleans are 0/1 INTEGERs.
-- Tables are STRICT so a wrong type is an error rather than a silent conversion.

-- Facts about this database itself, such as the owner id that tags our Azure resources.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;

-- Desired state: one row per pool.
CREATE TABLE pools (
    name       TEXT PRIMARY KEY NOT NULL,
    spec       TEXT NOT NULL,                     -- PoolSpec as JSON
    generation INTEGER NOT NULL DEFAULT 1,        -- bumped on every change of spec or target
    deleting   INTEGER NOT NULL DEFAULT 0 CHECK (deleting IN (0, 1)),
    next_index INTEGER NOT NULL DEFAULT 1 CHECK (next_index >= 0), -- node names are never reused
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- Inventory: every VM renderburst knows of, with what Azure last showed about it.
CREATE TABLE vms (
    name           TEXT PRIMARY KEY NOT NULL,
    pool           TEXT NOT NULL REFERENCES pools (name),
    size           TEXT NOT NULL,
    priority       TEXT NOT NULL,                 -- regular | spot
    state          TEXT NOT NULL,                 -- NodeState, snake_case
    power_state    TEXT,
    azure_id       TEXT,
    failed_code    TEXT,
    created_at     INTEGER NOT NULL,
    started_at     INTEGER,
    deallocated_at INTEGER,
    last_seen      INTEGER,
    -- Written by the heartbeat and drain API, never by the inventory upsert.
    last_heartbeat INTEGER,
    busy           INTEGER NOT NULL DEFAULT 0 CHECK (busy IN (0, 1)),
    draining       INTEGER NOT NULL DEFAULT 0 CHECK (draining IN (0, 1))
) STRICT;

CREATE INDEX vms_pool ON vms (pool, name);

-- The intent journal: written before an ARM write, closed after it. Open rows are what
-- start-up recovery resolves. Kept after a pool is removed: it is history.
CREATE TABLE intents (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    pool          TEXT NOT NULL,
    node          TEXT NOT NULL,
    kind          TEXT NOT NULL,                  -- ActionKind, snake_case
    detail        TEXT NOT NULL,                  -- JSON
    reason        TEXT NOT NULL,
    operation     TEXT,                           -- JSON: the long-running operation to poll
    opened_at     INTEGER NOT NULL,
    closed_at     INTEGER,
    outcome       TEXT CHECK (outcome IN ('succeeded', 'failed', 'abandoned')),
    error_code    TEXT,
    error_message TEXT,
    CHECK ((closed_at IS NULL) = (outcome IS NULL))
) STRICT;

CREATE INDEX intents_open ON intents (id) WHERE closed_at IS NULL;

-- Append-only audit log. AUTOINCREMENT so ids are never reused after a trim: clients page
-- with `after=ID`.
CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    pool    TEXT,
    node    TEXT,
    actor   TEXT NOT NULL,
    message TEXT NOT NULL,
    data    TEXT NOT NULL                         -- JSON
) STRICT;

-- Offerings Azure refused for capacity or quota, avoided until `until`.
CREATE TABLE unavailable_offerings (
    size     TEXT NOT NULL CHECK (size = lower(size)),
    priority TEXT NOT NULL,
    reason   TEXT NOT NULL,                       -- UnavailableReason, snake_case
    code     TEXT NOT NULL,                       -- the ARM error code
    since    INTEGER NOT NULL,
    until    INTEGER NOT NULL,
    PRIMARY KEY (size, priority)
) STRICT;

-- The last status each background task reported, for GET /v1/status.
CREATE TABLE task_status (
    name       TEXT PRIMARY KEY NOT NULL,
    status     TEXT NOT NULL,                     -- JSON
    updated_at INTEGER NOT NULL
) STRICT;

-- API tokens, stored only as hex SHA-256 hashes.
CREATE TABLE api_tokens (
    name       TEXT PRIMARY KEY NOT NULL,
    role       TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) STRICT;
