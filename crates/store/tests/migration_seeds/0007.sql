-- The pool's enrollment token, moved into pool_enroll_keys by 0008.
INSERT INTO pool_enroll_tokens (pool, token_hash, created_at) VALUES ('maya', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', 1600);
