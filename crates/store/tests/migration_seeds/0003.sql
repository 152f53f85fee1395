-- A request made by a named token (its trigger writes the request.created event).
INSERT INTO requests (id, pool, count, requester, created_at, expires_at, created_by)
VALUES ('6f1c2b1e-9a55-4d1e-8f3a-2d7c1e0b9a03', 'maya', 1, 'deadline', 1200, 999999999, 'deadline');
