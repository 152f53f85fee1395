INSERT INTO node_tokens (node, token_hash, created_at) VALUES ('maya-00001', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 1500);
UPDATE vms SET registered_at = 1510, node_seen_at = 1520 WHERE name = 'maya-00001';
