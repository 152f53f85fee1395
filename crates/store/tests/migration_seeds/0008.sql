INSERT INTO pool_enroll_keys (token_hash, pool, created_at, expires_at) VALUES ('dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd', 'maya', 1700, 999999999);
UPDATE vms SET enroll_until = 999999999 WHERE name = 'maya-00003';
