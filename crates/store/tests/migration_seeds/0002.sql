-- A live node request and a released one.
INSERT INTO requests (id, pool, count, requester, job, created_at, expires_at)
VALUES ('6f1c2b1e-9a55-4d1e-8f3a-2d7c1e0b9a01', 'maya', 2, 'deadline', 'shot_010', 1100, 999999999);
INSERT INTO requests (id, pool, count, requester, created_at, expires_at, released_at, released_by)
VALUES ('6f1c2b1e-9a55-4d1e-8f3a-2d7c1e0b9a02', 'maya', 1, 'deadline', 1100, 1200, 1150, 'deadline');
