-- Issue 34: the staff role `data` reads the CDS Events and Metrics feeds (/cds/events,
-- /cds/metrics). Only the CHECK on `staff.role` changes; it only widens (decision 0015:
-- migrations expand), so existing rows and every reference to `staff` stay as they are.
ALTER TABLE staff DROP CONSTRAINT staff_role_check;
ALTER TABLE staff ADD CONSTRAINT staff_role_check CHECK (role IN ('admin', 'finance', 'warden', 'inspector', 'data'));

-- The CDS feeds read sessions, plate checks and violations by time (events by the hour,
-- metrics over at most 7 days): without these, each query scans the whole table.
CREATE INDEX sessions_started_idx ON sessions (started_at);
CREATE INDEX sessions_ended_idx ON sessions (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX plate_checks_checked_idx ON plate_checks (checked_at);
CREATE INDEX violations_issued_idx ON violations (issued_at);
