-- What a first-wave daemon held: an owner, a pool with a first-wave spec (no bootstrap,
-- batch or licenses keys), its VMs in several states, an open and a closed intent, events,
-- an avoided offering, a task status and an API token.
INSERT INTO meta (key, value) VALUES ('owner_id', '0b7e4c1a-2f3d-4e5a-9b6c-7d8e9f0a1b2c');
INSERT INTO pools (name, spec, generation, deleting, next_index, created_at, updated_at)
VALUES ('maya',
        '{"name":"maya","mode":"vm","vm_sizes":["Standard_NC4as_T4_v3","Standard_NC8as_T4_v3"],"priority":"spot","image":"Canonical:ubuntu-24_04-lts:server:latest","os":"linux","min":0,"max":50,"target":3,"idle_timeout_seconds":900,"scale_down":"deallocate","tags":{"show":"ep101"}}',
        4, 0, 4, 1000, 1100);
INSERT INTO vms (name, pool, size, priority, state, power_state, azure_id, created_at, started_at, last_seen, busy)
VALUES ('maya-00001', 'maya', 'Standard_NC4as_T4_v3', 'spot', 'running', 'PowerState/running',
        '/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/maya-00001', 1001, 1050, 1100, 1),
       ('maya-00002', 'maya', 'Standard_NC4as_T4_v3', 'spot', 'deallocated', 'PowerState/deallocated',
        '/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/maya-00002', 1002, 1051, 1100, 0),
       ('maya-00003', 'maya', 'Standard_NC8as_T4_v3', 'spot', 'creating', NULL, NULL, 1090, NULL, NULL, 0);
INSERT INTO intents (pool, node, kind, detail, reason, operation, opened_at)
VALUES ('maya', 'maya-00003', 'create', '{"size":"Standard_NC8as_T4_v3","priority":"spot"}', 'target 3 > 2 running', NULL, 1090);
INSERT INTO intents (pool, node, kind, detail, reason, opened_at, closed_at, outcome)
VALUES ('maya', 'maya-00001', 'create', '{"size":"Standard_NC4as_T4_v3","priority":"spot"}', 'target 1 > 0 running', 1001, 1050, 'succeeded');
INSERT INTO events (at, kind, pool, node, actor, message, data)
VALUES (1001, 'vm.created', 'maya', 'maya-00001', 'controller', 'created maya-00001', '{}');
INSERT INTO unavailable_offerings (size, priority, reason, code, since, until)
VALUES ('standard_nc4as_t4_v3', 'spot', 'capacity', 'SkuNotAvailable', 1080, 4680);
INSERT INTO task_status (name, status, updated_at) VALUES ('reconciler', '{"last_activation":1100}', 1100);
INSERT INTO api_tokens (name, role, token_hash, created_at) VALUES ('deadline', 'requester', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 1000);
