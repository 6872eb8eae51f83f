-- Web Push subscriptions of the drivers' app (one per browser; reminders before a session
-- ends). The endpoint is the push service's URL for one browser.
CREATE TABLE push_subscriptions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    driver_id   INTEGER NOT NULL REFERENCES drivers(id),
    endpoint    TEXT NOT NULL CONSTRAINT push_subscriptions_endpoint_key UNIQUE,
    p256dh      TEXT NOT NULL,
    auth        TEXT NOT NULL,
    lang        TEXT NOT NULL CHECK (lang IN ('vi', 'en')),
    created_at  TEXT NOT NULL
);
CREATE INDEX push_subscriptions_driver ON push_subscriptions (driver_id);
