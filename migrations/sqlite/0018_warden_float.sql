-- no-transaction
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
-- The warden float: a prepaid account per warden (topped up by finance) from which a warden
-- pays parking on a driver's behalf ("thanh toán hộ" with the warden's own account). Like a
-- wallet it never goes below zero. The table is rebuilt to change its CHECK, as in 0007.
CREATE TABLE accounts_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL CHECK (kind IN ('wallet', 'processor_clearing', 'carrier_receivable',
                    'carrier_fee', 'warden_cash', 'point_revenue', 'refunds', 'sandbox_funding',
                    'cash_office', 'unapplied_cash', 'refund_hold', 'write_off', 'warden_float')),
    ref         TEXT NOT NULL,
    balance     INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    CONSTRAINT accounts_kind_ref_key UNIQUE (kind, ref),
    CONSTRAINT accounts_wallet_not_negative CHECK (kind <> 'wallet' OR balance >= 0),
    CONSTRAINT accounts_float_not_negative CHECK (kind <> 'warden_float' OR balance >= 0)
);
INSERT INTO accounts_new (id, kind, ref, balance, created_at) SELECT id, kind, ref, balance, created_at FROM accounts;
DROP TABLE accounts;
ALTER TABLE accounts_new RENAME TO accounts;

-- How a slip was paid: cash handed to the warden (counted at the shift's close), or the
-- warden's float (no cash for the city to count).
ALTER TABLE cash_collections ADD COLUMN payment TEXT NOT NULL DEFAULT 'cash' CHECK (payment IN ('cash', 'float'));

PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;
