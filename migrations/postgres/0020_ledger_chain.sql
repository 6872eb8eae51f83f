-- The ledger's hash chain (issue 34, docs/decisions/0026-ledger-hash-chain.md): each ledger
-- transaction's place in the chain and its hash, given by the sealer (one node at a time)
-- shortly after it commits; the chain's head; the daily digests published at
-- /public/ledger/digests.
ALTER TABLE ledger_transactions ADD COLUMN chain_seq BIGINT, ADD COLUMN chain_hash TEXT;
CREATE UNIQUE INDEX ledger_transactions_chain_seq_key ON ledger_transactions (chain_seq);
-- Only the transactions not sealed yet: what the sealer reads, a few rows at any time.
CREATE INDEX ledger_transactions_unsealed_idx ON ledger_transactions (created_at, id) WHERE chain_seq IS NULL;

CREATE TABLE ledger_chain_head (
    id    INT PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO ledger_chain_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE ledger_digests (
    day           TEXT PRIMARY KEY,
    from_seq      BIGINT NOT NULL,
    to_seq        BIGINT NOT NULL,
    transactions  BIGINT NOT NULL,
    moved         BIGINT NOT NULL,
    last_hash     TEXT NOT NULL,
    made_at       TIMESTAMPTZ NOT NULL
);

-- A closed month refuses changes to what its transactions say, not their sealing.
DROP TRIGGER ledger_transactions_period_open ON ledger_transactions;
CREATE TRIGGER ledger_transactions_period_open BEFORE INSERT OR UPDATE OF kind, session_id, created_at
    ON ledger_transactions FOR EACH ROW EXECUTE FUNCTION ledger_period_open();
