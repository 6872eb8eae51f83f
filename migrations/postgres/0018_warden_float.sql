-- The warden float: a prepaid account per warden (topped up by finance) from which a warden
-- pays parking on a driver's behalf ("thanh toán hộ" with the warden's own account). Like a
-- wallet it never goes below zero.
ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check CHECK (kind IN ('wallet', 'processor_clearing',
    'carrier_receivable', 'carrier_fee', 'warden_cash', 'point_revenue', 'refunds', 'sandbox_funding',
    'cash_office', 'unapplied_cash', 'refund_hold', 'write_off', 'warden_float'));
ALTER TABLE accounts ADD CONSTRAINT accounts_float_not_negative CHECK (kind <> 'warden_float' OR balance >= 0);

-- How a slip was paid: cash handed to the warden (counted at the shift's close), or the
-- warden's float (no cash for the city to count).
ALTER TABLE cash_collections ADD COLUMN payment TEXT NOT NULL DEFAULT 'cash' CHECK (payment IN ('cash', 'float'));
