-- no-transaction
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
-- Finance: channel and point of revenue postings, closed periods, discrepancies, carrier
-- settlements, adjustments, refund requests, audit.

-- New ledger accounts: refunds held for finance's approval, and written-off amounts
-- (the table is rebuilt to change its CHECK, as in 0007).
CREATE TABLE accounts_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL CHECK (kind IN ('wallet', 'processor_clearing', 'carrier_receivable',
                    'carrier_fee', 'warden_cash', 'point_revenue', 'refunds', 'sandbox_funding',
                    'cash_office', 'unapplied_cash', 'refund_hold', 'write_off')),
    ref         TEXT NOT NULL,
    balance     INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    CONSTRAINT accounts_kind_ref_key UNIQUE (kind, ref),
    CONSTRAINT accounts_wallet_not_negative CHECK (kind <> 'wallet' OR balance >= 0)
);
INSERT INTO accounts_new (id, kind, ref, balance, created_at) SELECT id, kind, ref, balance, created_at FROM accounts;
DROP TABLE accounts;
ALTER TABLE accounts_new RENAME TO accounts;

-- Ledger postings say which channel and point revenue belongs to: the revenue reports
-- group the postings themselves, never a second copy of the amounts. Set on a point's
-- revenue postings and on the carrier's share of an SMS turn (attributed to the same point).
ALTER TABLE postings ADD COLUMN channel TEXT;
ALTER TABLE postings ADD COLUMN point_id INTEGER REFERENCES points(id);
UPDATE postings SET point_id = (SELECT CAST(a.ref AS INTEGER) FROM accounts a WHERE a.id = postings.account_id)
    WHERE account_id IN (SELECT id FROM accounts WHERE kind = 'point_revenue');
UPDATE postings SET channel = (
    SELECT CASE
        WHEN t.kind LIKE 'sms%' THEN 'sms'
        WHEN t.kind LIKE 'card%' THEN 'card'
        WHEN t.kind LIKE 'cash%' THEN 'warden_cash'
        ELSE 'wallet' END
    FROM ledger_transactions t WHERE t.id = postings.transaction_id)
    WHERE point_id IS NOT NULL;
UPDATE postings SET channel = 'sms', point_id = (
    SELECT MIN(r.point_id) FROM postings r WHERE r.transaction_id = postings.transaction_id AND r.point_id IS NOT NULL)
    WHERE account_id IN (SELECT id FROM accounts WHERE kind = 'carrier_fee');
CREATE INDEX ledger_transactions_created_idx ON ledger_transactions (created_at);
CREATE INDEX sms_messages_received_idx ON sms_messages (received_at);

-- Months closed by finance. A trigger refuses any ledger transaction dated inside one.
CREATE TABLE finance_periods (
    month                 TEXT PRIMARY KEY,
    starts_at             TEXT NOT NULL,
    ends_at               TEXT NOT NULL,
    closed_by             INTEGER NOT NULL REFERENCES staff(id),
    closed_at             TEXT NOT NULL,
    overridden            INTEGER NOT NULL,
    override_reason       TEXT,
    open_discrepancy_ids  TEXT NOT NULL
);

-- What reconciliation found; (kind, subject) keeps a finding's id across runs.
CREATE TABLE discrepancies (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    section          TEXT NOT NULL CHECK (section IN ('processor', 'carrier', 'cash', 'ledger')),
    kind             TEXT NOT NULL,
    subject          TEXT NOT NULL,
    period           TEXT NOT NULL,
    day              TEXT NOT NULL,
    district_id      INTEGER REFERENCES districts(id),
    expected         INTEGER,
    actual           INTEGER,
    details          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('open', 'resolved', 'cleared')),
    detected_at      TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    resolved_by      INTEGER REFERENCES staff(id),
    resolved_at      TEXT,
    resolution_note  TEXT,
    CONSTRAINT discrepancies_kind_subject_key UNIQUE (kind, subject)
);
CREATE INDEX discrepancies_period_idx ON discrepancies (period, day);

-- Carriers' monthly settlement files (a new file for a month replaces the earlier one).
CREATE TABLE carrier_settlements (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    carrier        TEXT NOT NULL,
    month          TEXT NOT NULL,
    lines          INTEGER NOT NULL,
    gross          INTEGER NOT NULL,
    share          INTEGER NOT NULL,
    net            INTEGER NOT NULL,
    sha256         TEXT NOT NULL,
    replaces       INTEGER REFERENCES carrier_settlements(id),
    superseded_at  TEXT,
    uploaded_by    INTEGER NOT NULL REFERENCES staff(id),
    uploaded_at    TEXT NOT NULL
);
CREATE UNIQUE INDEX carrier_settlements_current_key ON carrier_settlements (carrier, month) WHERE superseded_at IS NULL;

CREATE TABLE carrier_settlement_lines (
    settlement_id  INTEGER NOT NULL REFERENCES carrier_settlements(id),
    line           INTEGER NOT NULL,
    message_id     TEXT NOT NULL,
    received_at    TEXT NOT NULL,
    gross          INTEGER NOT NULL,
    share          INTEGER NOT NULL,
    net            INTEGER NOT NULL,
    PRIMARY KEY (settlement_id, line)
);
CREATE UNIQUE INDEX carrier_settlement_lines_message_key ON carrier_settlement_lines (settlement_id, message_id);

-- Corrections: new ledger transactions in an open period, with reason and author.
CREATE TABLE finance_adjustments (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id  INTEGER NOT NULL REFERENCES ledger_transactions(id),
    period          TEXT NOT NULL,
    debit           TEXT NOT NULL,
    credit          TEXT NOT NULL,
    amount          INTEGER NOT NULL CHECK (amount > 0),
    reason          TEXT NOT NULL,
    author_id       INTEGER NOT NULL REFERENCES staff(id),
    discrepancy_id  INTEGER REFERENCES discrepancies(id),
    created_at      TEXT NOT NULL
);
CREATE INDEX finance_adjustments_period_idx ON finance_adjustments (period);

-- Drivers' refund requests, decided by finance.
CREATE TABLE refund_requests (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    driver_id      INTEGER NOT NULL REFERENCES drivers(id),
    kind           TEXT NOT NULL CHECK (kind IN ('wallet_balance', 'session')),
    session_id     INTEGER REFERENCES sessions(id),
    amount         INTEGER NOT NULL CHECK (amount > 0),
    reason         TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    decided_by     INTEGER REFERENCES staff(id),
    decided_at     TEXT,
    decision_note  TEXT,
    to_wallet      INTEGER NOT NULL DEFAULT 0,
    to_cards       INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL
);
CREATE UNIQUE INDEX refund_requests_pending_session_key ON refund_requests (session_id)
    WHERE status = 'pending' AND session_id IS NOT NULL;
CREATE INDEX refund_requests_status_idx ON refund_requests (status, created_at);
CREATE INDEX refund_requests_driver_idx ON refund_requests (driver_id, created_at);
ALTER TABLE refunds ADD COLUMN request_id INTEGER REFERENCES refund_requests(id);

-- Every finance action, written in the same transaction as the action.
CREATE TABLE finance_audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    staff_id    INTEGER NOT NULL REFERENCES staff(id),
    action      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    details     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX finance_audit_created_idx ON finance_audit (created_at);

CREATE TRIGGER ledger_transactions_period_open BEFORE INSERT ON ledger_transactions
WHEN EXISTS (SELECT 1 FROM finance_periods WHERE NEW.created_at >= starts_at AND NEW.created_at < ends_at)
BEGIN
    SELECT RAISE(ABORT, 'period_closed: the ledger transaction falls in a closed month');
END;
CREATE TRIGGER ledger_transactions_period_update BEFORE UPDATE ON ledger_transactions
WHEN EXISTS (SELECT 1 FROM finance_periods WHERE (NEW.created_at >= starts_at AND NEW.created_at < ends_at)
             OR (OLD.created_at >= starts_at AND OLD.created_at < ends_at))
BEGIN
    SELECT RAISE(ABORT, 'period_closed: the ledger transaction falls in a closed month');
END;
CREATE TRIGGER postings_period_open BEFORE INSERT ON postings
WHEN EXISTS (SELECT 1 FROM ledger_transactions t JOIN finance_periods f
             ON t.created_at >= f.starts_at AND t.created_at < f.ends_at WHERE t.id = NEW.transaction_id)
BEGIN
    SELECT RAISE(ABORT, 'period_closed: the posting falls in a closed month');
END;

PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;
