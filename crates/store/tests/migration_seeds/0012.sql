INSERT INTO pool_backoff (pool, kind, streak, until, permanent, code, condition, generation, open, since)
VALUES ('maya', 'create', 3, 1764000900, 1, 'InvalidResourceReference',
        'Blocked: InvalidResourceReference: the subnet does not exist; fix: azure.subnet_id', 4, 0, 1764000000);
INSERT INTO pool_reusable_names (pool, node) VALUES ('maya', 'maya-00004');
