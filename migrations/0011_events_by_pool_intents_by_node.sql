-- `GET /v1/events?pool=NAME` reads one pool's newest events: with this index that is a walk
-- back from the end of the pool's ids, not a scan of the whole log. Time filters (`since`)
-- ride on the id order (ids and times grow together), so they need no index of their own.
CREATE INDEX events_pool ON events (pool, id);

-- Whether a VM that left Azure was ours to remove is the last intent about it (a restarted
-- daemon has nothing else to go on): one lookup per vanished node.
CREATE INDEX intents_node ON intents (node, id);
