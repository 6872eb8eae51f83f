-- Wardens on handhelds: password login, street assignments, plate checks, cash paid on a
-- driver's behalf (with slips), violations with photos, offline sync flags, shifts.

ALTER TABLE staff ADD COLUMN username TEXT;
ALTER TABLE staff ADD COLUMN password_hash TEXT;
CREATE UNIQUE INDEX staff_username_key ON staff (username) WHERE username IS NOT NULL;

CREATE TABLE staff_streets (
    staff_id    BIGINT NOT NULL REFERENCES staff(id),
    street_id   BIGINT NOT NULL REFERENCES streets(id),
    PRIMARY KEY (staff_id, street_id)
);

-- The handheld a token was issued to.
ALTER TABLE staff_tokens ADD COLUMN device TEXT;

-- New ledger accounts: the city's cash office (wardens hand cash over to it) and the
-- suspense account for cash that could not pay for a session (finance settles it).
ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check CHECK (kind IN ('wallet', 'processor_clearing',
    'carrier_receivable', 'carrier_fee', 'warden_cash', 'point_revenue', 'refunds', 'sandbox_funding',
    'cash_office', 'unapplied_cash'));

CREATE TABLE warden_shifts (
    id             BIGSERIAL PRIMARY KEY,
    staff_id       BIGINT NOT NULL REFERENCES staff(id),
    device         TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    opened_at      TIMESTAMPTZ NOT NULL,
    closed_at      TIMESTAMPTZ,
    expected_cash  BIGINT,
    declared_cash  BIGINT CHECK (declared_cash >= 0),
    difference     BIGINT,
    transaction_id BIGINT REFERENCES ledger_transactions(id),
    note           TEXT,
    close_note     TEXT
);
-- One open shift per warden, whatever the races.
CREATE UNIQUE INDEX warden_shifts_open_key ON warden_shifts (staff_id) WHERE status = 'open';
CREATE INDEX warden_shifts_staff_idx ON warden_shifts (staff_id, opened_at);

-- Cash taken by a warden: each payment (start or extension) has its slip.
CREATE TABLE cash_collections (
    id                 BIGSERIAL PRIMARY KEY,
    number             TEXT CONSTRAINT cash_collections_number_key UNIQUE,
    verification_code  TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('start', 'extension')),
    status             TEXT NOT NULL CHECK (status IN ('applied', 'unapplied')),
    staff_id           BIGINT NOT NULL REFERENCES staff(id),
    shift_id           BIGINT REFERENCES warden_shifts(id),
    session_id         BIGINT REFERENCES sessions(id),
    point_id           BIGINT NOT NULL REFERENCES points(id),
    plate              TEXT NOT NULL,
    turns              INTEGER NOT NULL CHECK (turns > 0),
    amount             BIGINT NOT NULL CHECK (amount >= 0),
    paid_until         TIMESTAMPTZ NOT NULL,
    transaction_id     BIGINT REFERENCES ledger_transactions(id),
    issued_at          TIMESTAMPTZ NOT NULL,
    synced_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX cash_collections_shift_idx ON cash_collections (shift_id);
CREATE INDEX cash_collections_session_idx ON cash_collections (session_id);

CREATE TABLE violations (
    id          BIGSERIAL PRIMARY KEY,
    number      TEXT CONSTRAINT violations_number_key UNIQUE,
    staff_id    BIGINT NOT NULL REFERENCES staff(id),
    point_id    BIGINT NOT NULL REFERENCES points(id),
    plate       TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('unpaid', 'overstay', 'wrong_vehicle_class', 'outside_bay',
                    'obstruction')),
    note        TEXT NOT NULL,
    lat         DOUBLE PRECISION,
    lon         DOUBLE PRECISION,
    issued_at   TIMESTAMPTZ NOT NULL,
    synced_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX violations_plate_idx ON violations (plate, issued_at);

CREATE TABLE violation_photos (
    violation_id  BIGINT NOT NULL REFERENCES violations(id),
    sha256        TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    size          BIGINT NOT NULL,
    position      INTEGER NOT NULL,
    PRIMARY KEY (violation_id, position)
);
CREATE INDEX violation_photos_sha_idx ON violation_photos (sha256);

-- Every plate check, written in batches by a background writer.
CREATE TABLE plate_checks (
    id          BIGSERIAL PRIMARY KEY,
    staff_id    BIGINT NOT NULL REFERENCES staff(id),
    point_id    BIGINT NOT NULL REFERENCES points(id),
    plate       TEXT NOT NULL,
    verdict     TEXT NOT NULL CHECK (verdict IN ('valid', 'grace', 'expired', 'unpaid', 'elsewhere')),
    session_id  BIGINT,
    near_misses INTEGER NOT NULL DEFAULT 0,
    source      TEXT NOT NULL CHECK (source IN ('online', 'sync')),
    checked_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX plate_checks_point_idx ON plate_checks (point_id, checked_at);
CREATE INDEX plate_checks_staff_idx ON plate_checks (staff_id, checked_at);

-- What offline sync (and other warden flows) could not apply as recorded: for finance.
CREATE TABLE warden_flags (
    id             BIGSERIAL PRIMARY KEY,
    kind           TEXT NOT NULL,
    staff_id       BIGINT NOT NULL REFERENCES staff(id),
    shift_id       BIGINT REFERENCES warden_shifts(id),
    session_id     BIGINT REFERENCES sessions(id),
    collection_id  BIGINT REFERENCES cash_collections(id),
    violation_id   BIGINT REFERENCES violations(id),
    action_id      TEXT,
    details        TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    resolved_at    TIMESTAMPTZ,
    resolved_by    BIGINT REFERENCES staff(id),
    resolution     TEXT
);
CREATE INDEX warden_flags_open_idx ON warden_flags (created_at) WHERE resolved_at IS NULL;

-- Sessions by plate (checks read the latest session of a plate at a point).
CREATE INDEX sessions_plate_idx ON sessions (plate, point_id, started_at);
