-- Creating a node request is the API's hottest write (render managers renew requests all
-- the time). Its audit event used to be a second statement and a second commit; a trigger
-- writes it in the same statement, so a request and its event are one round trip to SQLite
-- and can never exist without each other.
ALTER TABLE requests ADD COLUMN created_by TEXT NOT NULL DEFAULT '';

CREATE TRIGGER requests_created_event AFTER INSERT ON requests
BEGIN
    INSERT INTO events (at, kind, pool, node, actor, message, data)
    VALUES (
        NEW.created_at,
        'request.created',
        NEW.pool,
        NULL,
        NEW.created_by,
        printf('%s asked for %d nodes for %d s%s',
               NEW.requester, NEW.count, NEW.expires_at - NEW.created_at,
               CASE WHEN NEW.job IS NULL THEN '' ELSE printf(' for job "%s"', NEW.job) END),
        json_object('id', NEW.id, 'count', NEW.count, 'ttl_seconds', NEW.expires_at - NEW.created_at,
                    'requester', NEW.requester, 'job', NEW.job)
    );
END;
