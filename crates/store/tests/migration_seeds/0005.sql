INSERT INTO schedules (name, spec, since, created_at, updated_at)
VALUES ('nights',
        '{"name":"nights","pool":"maya","cron":"0 20 * * 1-5","timezone":"Europe/Paris","set":{"max":0}}',
        1400, 1400, 1400);
