-- Plate checks journaled by a node before they are answered (issue 34, backend/src/check_log.rs):
-- per journal, the last sequence number written to plate_checks, moved in the same
-- transaction as the rows. A node replays a stopped node's journal after this mark.
CREATE TABLE check_journal_marks (
    journal  TEXT PRIMARY KEY,
    upto     BIGINT NOT NULL
);
