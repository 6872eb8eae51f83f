-- Mobile-originated SMS purchases, deduplicated by the carrier's message id. Refused
-- messages are kept too, so a repeated delivery gets the same reply and nothing twice.
CREATE TABLE sms_messages (
    carrier      TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    sender_hash  TEXT NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('started', 'extended', 'refused')),
    reply        TEXT NOT NULL,
    session_id   BIGINT REFERENCES sessions(id),
    amount       BIGINT NOT NULL DEFAULT 0,
    received_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (carrier, message_id)
);

-- Where expiry reminders go for sessions without a driver account (SMS).
ALTER TABLE sessions ADD COLUMN notify_phone TEXT;
