-- no-transaction
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
-- Issue 34: the staff role `data` reads the CDS Events and Metrics feeds (/cds/events,
-- /cds/metrics). SQLite cannot change a CHECK constraint: `staff` is rebuilt with the wider
-- one by the documented procedure, as 0007 and 0008 rebuilt `accounts` (this file runs
-- outside sqlx's transaction so foreign keys can be switched off while the table is swapped;
-- the rows keep their ids, so every reference to them stays sound, which the check below
-- and tests/tests/cds.rs verify).
CREATE TABLE staff_new (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'finance', 'warden', 'inspector', 'data')),
    created_at     TEXT NOT NULL,
    username       TEXT,
    password_hash  TEXT
);
INSERT INTO staff_new (id, name, role, created_at, username, password_hash)
    SELECT id, name, role, created_at, username, password_hash FROM staff;
DROP TABLE staff;
ALTER TABLE staff_new RENAME TO staff;
CREATE UNIQUE INDEX staff_username_key ON staff (username) WHERE username IS NOT NULL;

-- The CDS feeds read sessions, plate checks and violations by time (events by the hour,
-- metrics over at most 7 days): without these, each query scans the whole table.
CREATE INDEX sessions_started_idx ON sessions (started_at);
CREATE INDEX sessions_ended_idx ON sessions (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX plate_checks_checked_idx ON plate_checks (checked_at);
CREATE INDEX violations_issued_idx ON violations (issued_at);
PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;
