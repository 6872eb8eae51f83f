-- Saved cards, card-paid sessions, refunds through the processor, settlement data for
-- finance, and job leases (one node runs a job at a time).

-- The processor's customer for a driver (created on the first card saved).
CREATE TABLE processor_customers (
    driver_id    INTEGER PRIMARY KEY REFERENCES drivers(id),
    customer_id  TEXT NOT NULL CONSTRAINT processor_customers_customer_key UNIQUE,
    gateway      TEXT NOT NULL,
    created_at   TEXT NOT NULL
);

-- Card setups (SetupIntents) started by a driver; a card is saved when one succeeds.
CREATE TABLE card_setups (
    id          TEXT PRIMARY KEY,
    driver_id   INTEGER NOT NULL REFERENCES drivers(id),
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE saved_cards (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    driver_id          INTEGER NOT NULL REFERENCES drivers(id),
    payment_method_id  TEXT NOT NULL CONSTRAINT saved_cards_pm_key UNIQUE,
    brand              TEXT NOT NULL,
    last4              TEXT NOT NULL,
    exp_month          INTEGER NOT NULL,
    exp_year           INTEGER NOT NULL,
    created_at         TEXT NOT NULL,
    removed_at         TEXT
);
CREATE INDEX saved_cards_driver_idx ON saved_cards (driver_id);

-- A session start or extension paid by card. Recorded (pending) before the processor is
-- called, so a charge whose answer was lost is found again by the sweeper.
CREATE TABLE card_charges (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    driver_id        INTEGER NOT NULL REFERENCES drivers(id),
    card_id          INTEGER NOT NULL REFERENCES saved_cards(id),
    purpose          TEXT NOT NULL CHECK (purpose IN ('session_start', 'session_extend')),
    amount           INTEGER NOT NULL CHECK (amount > 0),
    plan             TEXT NOT NULL,
    session_id       INTEGER REFERENCES sessions(id),
    intent_id        TEXT CONSTRAINT card_charges_intent_key UNIQUE,
    charge_ref       TEXT,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'requires_action', 'succeeded', 'failed',
                         'canceled', 'refund_due', 'abandoned')),
    failure_code     TEXT,
    amount_refunded  INTEGER NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0 AND amount_refunded <= amount),
    idem_scope       TEXT NOT NULL,
    idem_key         TEXT NOT NULL,
    action_deadline  TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    CONSTRAINT card_charges_idem_key UNIQUE (idem_scope, idem_key)
);
CREATE INDEX card_charges_open_idx ON card_charges (status, updated_at);
CREATE INDEX card_charges_session_idx ON card_charges (session_id);

-- Refunds through the processor. The ledger moves the amount to `refunds` (owed back to the
-- card) when the refund is decided, and follows the processor's final status.
CREATE TABLE refunds (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    source               TEXT NOT NULL CHECK (source IN ('card_charge', 'topup')),
    charge_id            INTEGER REFERENCES card_charges(id),
    intent_id            TEXT NOT NULL,
    driver_id            INTEGER NOT NULL REFERENCES drivers(id),
    session_id           INTEGER REFERENCES sessions(id),
    amount               INTEGER NOT NULL CHECK (amount > 0),
    reason               TEXT NOT NULL,
    requested_by         TEXT NOT NULL,
    processor_refund_id  TEXT CONSTRAINT refunds_processor_key UNIQUE,
    status               TEXT NOT NULL CHECK (status IN ('pending', 'submitted', 'succeeded', 'failed')),
    failure_reason       TEXT,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,
    settled_at           TEXT
);
CREATE INDEX refunds_open_idx ON refunds (status, updated_at);

ALTER TABLE payment_intents ADD COLUMN amount_refunded INTEGER NOT NULL DEFAULT 0;
ALTER TABLE payment_intents ADD COLUMN charge_ref TEXT;
ALTER TABLE drivers ADD COLUMN closed_at TEXT;

-- Settlement data imported from the processor, for finance's reconciliation.
CREATE TABLE stripe_balance_transactions (
    id                  TEXT PRIMARY KEY,
    type                TEXT NOT NULL,
    reporting_category  TEXT NOT NULL,
    amount              INTEGER NOT NULL,
    fee                 INTEGER NOT NULL,
    net                 INTEGER NOT NULL,
    currency            TEXT NOT NULL,
    status              TEXT NOT NULL,
    source              TEXT,
    created             TEXT NOT NULL,
    available_on        TEXT NOT NULL,
    imported_at         TEXT NOT NULL
);
CREATE INDEX stripe_balance_transactions_created_idx ON stripe_balance_transactions (created);

CREATE TABLE stripe_payouts (
    id                   TEXT PRIMARY KEY,
    amount               INTEGER NOT NULL,
    currency             TEXT NOT NULL,
    status               TEXT NOT NULL,
    arrival_date         TEXT NOT NULL,
    balance_transaction  TEXT,
    created              TEXT NOT NULL,
    imported_at          TEXT NOT NULL
);

-- Progress of the paginated imports: `high_water` is where the next run starts (created >=);
-- a run in progress keeps its lower bound, its cursor (last id stored) and the newest
-- `created` it has seen, so a crash resumes where it stopped.
CREATE TABLE stripe_import_state (
    kind        TEXT PRIMARY KEY,
    high_water  INTEGER NOT NULL DEFAULT 0,
    run_from    INTEGER,
    cursor      TEXT,
    run_max     INTEGER,
    updated_at  TEXT NOT NULL
);

-- Leases for jobs that must run on one node at a time.
CREATE TABLE job_leases (
    name    TEXT PRIMARY KEY,
    holder  TEXT NOT NULL,
    until   TEXT NOT NULL
);
