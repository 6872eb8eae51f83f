-- Card payments through the processor (Stripe). A payment intent is recorded when created;
-- the wallet is credited only when the processor's verified webhook says it succeeded.
CREATE TABLE payment_intents (
    id           TEXT PRIMARY KEY,
    driver_id    BIGINT NOT NULL REFERENCES drivers(id),
    purpose      TEXT NOT NULL CHECK (purpose IN ('topup')),
    amount       BIGINT NOT NULL CHECK (amount > 0),
    gateway      TEXT NOT NULL,
    status       TEXT NOT NULL,
    credited_at  TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX payment_intents_driver_idx ON payment_intents (driver_id, created_at);

-- Processor webhook events, deduplicated by their id.
CREATE TABLE processor_events (
    id           TEXT PRIMARY KEY,
    type         TEXT NOT NULL,
    object_id    TEXT,
    received_at  TIMESTAMPTZ NOT NULL
);
