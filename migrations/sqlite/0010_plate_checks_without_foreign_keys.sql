-- PostgreSQL's 0010 drops the foreign keys of plate_checks (their checks cost twice the
-- insert at peak check rates). The embedded SQLite database serves one node at demo rates
-- and would need the table rebuilt to drop them, so it keeps them; this file keeps the two
-- migration histories numbered alike.
SELECT 1;
