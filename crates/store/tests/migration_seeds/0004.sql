-- A Batch pool observed once.
INSERT INTO pools (name, spec, generation, next_index, created_at, updated_at)
VALUES ('nuke',
        '{"name":"nuke","mode":"batch","vm_sizes":["Standard_D4as_v5"],"priority":"spot","image":"Canonical:ubuntu-24_04-lts:server:latest","min":0,"max":20,"target":0,"batch":{"account":"rbfarm","node_agent_sku_id":"batch.node.ubuntu 24.04"}}',
        1, 1, 1300, 1300);
INSERT INTO batch_pools (pool, observed_at, account_endpoint, unavailable, preempted_total)
VALUES ('nuke', 1310, 'https://rbfarm.westeurope.batch.azure.com', '[]', 2);
