-- Finance: channel and point of revenue postings, closed periods, discrepancies, carrier
-- settlements, adjustments, refund requests, audit.

-- New ledger accounts: refunds held for finance's approval, and written-off amounts.
ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check CHECK (kind IN ('wallet', 'processor_clearing',
    'carrier_receivable', 'carrier_fee', 'warden_cash', 'point_revenue', 'refunds', 'sandbox_funding',
    'cash_office', 'unapplied_cash', 'refund_hold', 'write_off'));

-- Ledger postings say which channel and point revenue belongs to: the revenue reports
-- group the postings themselves, never a second copy of the amounts. Set on a point's
-- revenue postings and on the carrier's share of an SMS turn (attributed to the same point).
ALTER TABLE postings ADD COLUMN channel TEXT;
ALTER TABLE postings ADD COLUMN point_id BIGINT REFERENCES points(id);
UPDATE postings SET point_id = (SELECT CAST(a.ref AS BIGINT) FROM accounts a WHERE a.id = postings.account_id)
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
    starts_at             TIMESTAMPTZ NOT NULL,
    ends_at               TIMESTAMPTZ NOT NULL,
    closed_by             BIGINT NOT NULL REFERENCES staff(id),
    closed_at             TIMESTAMPTZ NOT NULL,
    overridden            BOOLEAN NOT NULL,
    override_reason       TEXT,
    open_discrepancy_ids  TEXT NOT NULL
);

-- What reconciliation found; (kind, subject) keeps a finding's id across runs.
CREATE TABLE discrepancies (
    id               BIGSERIAL PRIMARY KEY,
    section          TEXT NOT NULL CHECK (section IN ('processor', 'carrier', 'cash', 'ledger')),
    kind             TEXT NOT NULL,
    subject          TEXT NOT NULL,
    period           TEXT NOT NULL,
    day              TEXT NOT NULL,
    district_id      BIGINT REFERENCES districts(id),
    expected         BIGINT,
    actual           BIGINT,
    details          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('open', 'resolved', 'cleared')),
    detected_at      TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    resolved_by      BIGINT REFERENCES staff(id),
    resolved_at      TIMESTAMPTZ,
    resolution_note  TEXT,
    CONSTRAINT discrepancies_kind_subject_key UNIQUE (kind, subject)
);
CREATE INDEX discrepancies_period_idx ON discrepancies (period, day);

-- Carriers' monthly settlement files (a new file for a month replaces the earlier one).
CREATE TABLE carrier_settlements (
    id             BIGSERIAL PRIMARY KEY,
    carrier        TEXT NOT NULL,
    month          TEXT NOT NULL,
    lines          BIGINT NOT NULL,
    gross          BIGINT NOT NULL,
    share          BIGINT NOT NULL,
    net            BIGINT NOT NULL,
    sha256         TEXT NOT NULL,
    replaces       BIGINT REFERENCES carrier_settlements(id),
    superseded_at  TIMESTAMPTZ,
    uploaded_by    BIGINT NOT NULL REFERENCES staff(id),
    uploaded_at    TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX carrier_settlements_current_key ON carrier_settlements (carrier, month) WHERE superseded_at IS NULL;

CREATE TABLE carrier_settlement_lines (
    settlement_id  BIGINT NOT NULL REFERENCES carrier_settlements(id),
    line           INTEGER NOT NULL,
    message_id     TEXT NOT NULL,
    received_at    TIMESTAMPTZ NOT NULL,
    gross          BIGINT NOT NULL,
    share          BIGINT NOT NULL,
    net            BIGINT NOT NULL,
    PRIMARY KEY (settlement_id, line)
);
CREATE UNIQUE INDEX carrier_settlement_lines_message_key ON carrier_settlement_lines (settlement_id, message_id);

-- Corrections: new ledger transactions in an open period, with reason and author.
CREATE TABLE finance_adjustments (
    id              BIGSERIAL PRIMARY KEY,
    transaction_id  BIGINT NOT NULL REFERENCES ledger_transactions(id),
    period          TEXT NOT NULL,
    debit           TEXT NOT NULL,
    credit          TEXT NOT NULL,
    amount          BIGINT NOT NULL CHECK (amount > 0),
    reason          TEXT NOT NULL,
    author_id       BIGINT NOT NULL REFERENCES staff(id),
    discrepancy_id  BIGINT REFERENCES discrepancies(id),
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX finance_adjustments_period_idx ON finance_adjustments (period);

-- Drivers' refund requests, decided by finance.
CREATE TABLE refund_requests (
    id             BIGSERIAL PRIMARY KEY,
    driver_id      BIGINT NOT NULL REFERENCES drivers(id),
    kind           TEXT NOT NULL CHECK (kind IN ('wallet_balance', 'session')),
    session_id     BIGINT REFERENCES sessions(id),
    amount         BIGINT NOT NULL CHECK (amount > 0),
    reason         TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    decided_by     BIGINT REFERENCES staff(id),
    decided_at     TIMESTAMPTZ,
    decision_note  TEXT,
    to_wallet      BIGINT NOT NULL DEFAULT 0,
    to_cards       BIGINT NOT NULL DEFAULT 0,
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX refund_requests_pending_session_key ON refund_requests (session_id)
    WHERE status = 'pending' AND session_id IS NOT NULL;
CREATE INDEX refund_requests_status_idx ON refund_requests (status, created_at);
CREATE INDEX refund_requests_driver_idx ON refund_requests (driver_id, created_at);
ALTER TABLE refunds ADD COLUMN request_id BIGINT REFERENCES refund_requests(id);

-- Every finance action, written in the same transaction as the action.
CREATE TABLE finance_audit (
    id          BIGSERIAL PRIMARY KEY,
    staff_id    BIGINT NOT NULL REFERENCES staff(id),
    action      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    details     TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX finance_audit_created_idx ON finance_audit (created_at);

CREATE FUNCTION ledger_period_open() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM finance_periods WHERE NEW.created_at >= starts_at AND NEW.created_at < ends_at) THEN
        RAISE EXCEPTION 'period_closed: the ledger transaction falls in a closed month' USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_transactions_period_open BEFORE INSERT OR UPDATE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_period_open();

CREATE FUNCTION posting_period_open() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_transactions t JOIN finance_periods f
               ON t.created_at >= f.starts_at AND t.created_at < f.ends_at WHERE t.id = NEW.transaction_id) THEN
        RAISE EXCEPTION 'period_closed: the posting falls in a closed month' USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER postings_period_open BEFORE INSERT OR UPDATE ON postings
    FOR EACH ROW EXECUTE FUNCTION posting_period_open();
