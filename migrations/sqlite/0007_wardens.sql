-- no-transaction
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
-- Wardens on handhelds: password login, street assignments, plate checks, cash paid on a
-- driver's behalf (with slips), violations with photos, offline sync flags, shifts.

ALTER TABLE staff ADD COLUMN username TEXT;
ALTER TABLE staff ADD COLUMN password_hash TEXT;
CREATE UNIQUE INDEX staff_username_key ON staff (username) WHERE username IS NOT NULL;

CREATE TABLE staff_streets (
    staff_id    INTEGER NOT NULL REFERENCES staff(id),
    street_id   INTEGER NOT NULL REFERENCES streets(id),
    PRIMARY KEY (staff_id, street_id)
);

-- The handheld a token was issued to.
ALTER TABLE staff_tokens ADD COLUMN device TEXT;

-- New ledger accounts: the city's cash office (wardens hand cash over to it) and the
-- suspense account for cash that could not pay for a session (finance settles it).
-- SQLite cannot change a CHECK constraint: the table is rebuilt (the documented 12-step
-- procedure; this file runs outside sqlx's transaction so foreign keys can be switched off).
CREATE TABLE accounts_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL CHECK (kind IN ('wallet', 'processor_clearing', 'carrier_receivable',
                    'carrier_fee', 'warden_cash', 'point_revenue', 'refunds', 'sandbox_funding',
                    'cash_office', 'unapplied_cash')),
    ref         TEXT NOT NULL,
    balance     INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    CONSTRAINT accounts_kind_ref_key UNIQUE (kind, ref),
    CONSTRAINT accounts_wallet_not_negative CHECK (kind <> 'wallet' OR balance >= 0)
);
INSERT INTO accounts_new (id, kind, ref, balance, created_at) SELECT id, kind, ref, balance, created_at FROM accounts;
DROP TABLE accounts;
ALTER TABLE accounts_new RENAME TO accounts;

CREATE TABLE warden_shifts (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    staff_id       INTEGER NOT NULL REFERENCES staff(id),
    device         TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    opened_at      TEXT NOT NULL,
    closed_at      TEXT,
    expected_cash  INTEGER,
    declared_cash  INTEGER CHECK (declared_cash >= 0),
    difference     INTEGER,
    transaction_id INTEGER REFERENCES ledger_transactions(id),
    note           TEXT,
    close_note     TEXT
);
-- One open shift per warden, whatever the races.
CREATE UNIQUE INDEX warden_shifts_open_key ON warden_shifts (staff_id) WHERE status = 'open';
CREATE INDEX warden_shifts_staff_idx ON warden_shifts (staff_id, opened_at);

-- Cash taken by a warden: each payment (start or extension) has its slip.
CREATE TABLE cash_collections (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    number             TEXT CONSTRAINT cash_collections_number_key UNIQUE,
    verification_code  TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('start', 'extension')),
    status             TEXT NOT NULL CHECK (status IN ('applied', 'unapplied')),
    staff_id           INTEGER NOT NULL REFERENCES staff(id),
    shift_id           INTEGER REFERENCES warden_shifts(id),
    session_id         INTEGER REFERENCES sessions(id),
    point_id           INTEGER NOT NULL REFERENCES points(id),
    plate              TEXT NOT NULL,
    turns              INTEGER NOT NULL CHECK (turns > 0),
    amount             INTEGER NOT NULL CHECK (amount >= 0),
    paid_until         TEXT NOT NULL,
    transaction_id     INTEGER REFERENCES ledger_transactions(id),
    issued_at          TEXT NOT NULL,
    synced_at          TEXT NOT NULL
);
CREATE INDEX cash_collections_shift_idx ON cash_collections (shift_id);
CREATE INDEX cash_collections_session_idx ON cash_collections (session_id);

CREATE TABLE violations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    number      TEXT CONSTRAINT violations_number_key UNIQUE,
    staff_id    INTEGER NOT NULL REFERENCES staff(id),
    point_id    INTEGER NOT NULL REFERENCES points(id),
    plate       TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('unpaid', 'overstay', 'wrong_vehicle_class', 'outside_bay',
                    'obstruction')),
    note        TEXT NOT NULL,
    lat         REAL,
    lon         REAL,
    issued_at   TEXT NOT NULL,
    synced_at   TEXT NOT NULL
);
CREATE INDEX violations_plate_idx ON violations (plate, issued_at);

CREATE TABLE violation_photos (
    violation_id  INTEGER NOT NULL REFERENCES violations(id),
    sha256        TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    size          INTEGER NOT NULL,
    position      INTEGER NOT NULL,
    PRIMARY KEY (violation_id, position)
);
CREATE INDEX violation_photos_sha_idx ON violation_photos (sha256);

-- Every plate check, written in batches by a background writer.
CREATE TABLE plate_checks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    staff_id    INTEGER NOT NULL REFERENCES staff(id),
    point_id    INTEGER NOT NULL REFERENCES points(id),
    plate       TEXT NOT NULL,
    verdict     TEXT NOT NULL CHECK (verdict IN ('valid', 'grace', 'expired', 'unpaid', 'elsewhere')),
    session_id  INTEGER,
    near_misses INTEGER NOT NULL DEFAULT 0,
    source      TEXT NOT NULL CHECK (source IN ('online', 'sync')),
    checked_at  TEXT NOT NULL
);
CREATE INDEX plate_checks_point_idx ON plate_checks (point_id, checked_at);
CREATE INDEX plate_checks_staff_idx ON plate_checks (staff_id, checked_at);

-- What offline sync (and other warden flows) could not apply as recorded: for finance.
CREATE TABLE warden_flags (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT NOT NULL,
    staff_id       INTEGER NOT NULL REFERENCES staff(id),
    shift_id       INTEGER REFERENCES warden_shifts(id),
    session_id     INTEGER REFERENCES sessions(id),
    collection_id  INTEGER REFERENCES cash_collections(id),
    violation_id   INTEGER REFERENCES violations(id),
    action_id      TEXT,
    details        TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    resolved_at    TEXT,
    resolved_by    INTEGER REFERENCES staff(id),
    resolution     TEXT
);
CREATE INDEX warden_flags_open_idx ON warden_flags (created_at) WHERE resolved_at IS NULL;

-- Sessions by plate (checks read the latest session of a plate at a point).
CREATE INDEX sessions_plate_idx ON sessions (plate, point_id, started_at);

PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;
