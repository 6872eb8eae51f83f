-- Drivers, their vehicles and tokens.
CREATE TABLE drivers (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    phone       TEXT NOT NULL CONSTRAINT drivers_phone_key UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE driver_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    driver_id   INTEGER NOT NULL REFERENCES drivers(id),
    token_hash  TEXT NOT NULL CONSTRAINT driver_tokens_hash_key UNIQUE,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

CREATE TABLE vehicles (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    driver_id     INTEGER NOT NULL REFERENCES drivers(id),
    plate         TEXT NOT NULL,
    vehicle_class TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    removed_at    TEXT
);
CREATE UNIQUE INDEX vehicles_driver_plate_key ON vehicles (driver_id, plate) WHERE removed_at IS NULL;

-- The double-entry ledger. Amounts are signed whole VND; every transaction's postings sum to
-- zero. Positive = credit (what the city owes, e.g. a wallet; or has earned, revenue),
-- negative = debit (what is owed to the city or held for it: processor clearing, carrier
-- receivable, a warden's cash). An account's balance is the sum of its postings; the column
-- is kept in the same transaction and checked against them.
CREATE TABLE accounts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL CHECK (kind IN ('wallet', 'processor_clearing', 'carrier_receivable',
                    'carrier_fee', 'warden_cash', 'point_revenue', 'refunds', 'sandbox_funding')),
    ref         TEXT NOT NULL,
    balance     INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    CONSTRAINT accounts_kind_ref_key UNIQUE (kind, ref),
    -- A wallet never goes negative: the database refuses it whatever the code does.
    CONSTRAINT accounts_wallet_not_negative CHECK (kind <> 'wallet' OR balance >= 0)
);

CREATE TABLE ledger_transactions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    session_id  INTEGER,
    created_at  TEXT NOT NULL
);

CREATE TABLE postings (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id  INTEGER NOT NULL REFERENCES ledger_transactions(id),
    account_id      INTEGER NOT NULL REFERENCES accounts(id),
    amount          INTEGER NOT NULL CHECK (amount <> 0)
);
CREATE INDEX postings_account_idx ON postings (account_id, transaction_id);
CREATE INDEX postings_transaction_idx ON postings (transaction_id);

-- Parking sessions. `status` is 'active' until stopped or expired; one active session per
-- plate is enforced by a partial unique index.
CREATE TABLE sessions (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    driver_id           INTEGER REFERENCES drivers(id),
    plate               TEXT NOT NULL,
    vehicle_class       TEXT NOT NULL,
    point_id            INTEGER NOT NULL REFERENCES points(id),
    tariff_id           INTEGER NOT NULL REFERENCES tariffs(id),
    channel             TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('active', 'ended')),
    started_at          TEXT NOT NULL,
    paid_until          TEXT NOT NULL,
    -- paid_until plus the tariff's grace: until then the session holds its space and can be
    -- extended; after it, it expires.
    expires_at          TEXT NOT NULL,
    turns               INTEGER NOT NULL CHECK (turns > 0),
    amount_charged      INTEGER NOT NULL CHECK (amount_charged >= 0),
    amount_refunded     INTEGER NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    ended_at            TEXT,
    end_reason          TEXT CHECK (end_reason IN ('stopped', 'expired')),
    plate_corrected_at  TEXT,
    reminder_sent_at    TEXT,
    created_at          TEXT NOT NULL
);
CREATE UNIQUE INDEX sessions_active_plate_key ON sessions (plate) WHERE status = 'active';
CREATE INDEX sessions_point_active_idx ON sessions (point_id) WHERE status = 'active';
CREATE INDEX sessions_driver_idx ON sessions (driver_id, started_at);
CREATE INDEX sessions_active_expiry_idx ON sessions (expires_at) WHERE status = 'active';

-- Each purchase (start or extension) of a session, with its priced quote for the receipt.
CREATE TABLE session_purchases (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id      INTEGER NOT NULL REFERENCES sessions(id),
    turns           INTEGER NOT NULL CHECK (turns > 0),
    amount          INTEGER NOT NULL CHECK (amount >= 0),
    paid_until      TEXT NOT NULL,
    quote           TEXT NOT NULL,
    transaction_id  INTEGER REFERENCES ledger_transactions(id),
    created_at      TEXT NOT NULL
);
CREATE INDEX session_purchases_session_idx ON session_purchases (session_id);

-- Idempotency records of state-changing calls: written in the same transaction as the
-- effect, answered from `response` on a retry.
CREATE TABLE idempotency_keys (
    scope         TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status        INTEGER,
    response      TEXT,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
