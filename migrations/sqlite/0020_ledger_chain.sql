-- The ledger's hash chain (issue 34, docs/decisions/0026-ledger-hash-chain.md): each ledger
-- transaction's place in the chain and its hash, given by the sealer shortly after it
-- commits; the chain's head; the daily digests published at /public/ledger/digests.
ALTER TABLE ledger_transactions ADD COLUMN chain_seq INTEGER;
ALTER TABLE ledger_transactions ADD COLUMN chain_hash TEXT;
CREATE UNIQUE INDEX ledger_transactions_chain_seq_key ON ledger_transactions (chain_seq);
CREATE INDEX ledger_transactions_unsealed_idx ON ledger_transactions (created_at, id) WHERE chain_seq IS NULL;

CREATE TABLE ledger_chain_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO ledger_chain_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE ledger_digests (
    day           TEXT PRIMARY KEY,
    from_seq      INTEGER NOT NULL,
    to_seq        INTEGER NOT NULL,
    transactions  INTEGER NOT NULL,
    moved         INTEGER NOT NULL,
    last_hash     TEXT NOT NULL,
    made_at       TEXT NOT NULL
);

-- A closed month refuses changes to what its transactions say, not their sealing.
DROP TRIGGER ledger_transactions_period_update;
CREATE TRIGGER ledger_transactions_period_update BEFORE UPDATE OF kind, session_id, created_at ON ledger_transactions
WHEN EXISTS (SELECT 1 FROM finance_periods WHERE (NEW.created_at >= starts_at AND NEW.created_at < ends_at)
             OR (OLD.created_at >= starts_at AND OLD.created_at < ends_at))
BEGIN
    SELECT RAISE(ABORT, 'period_closed: the ledger transaction falls in a closed month');
END;
