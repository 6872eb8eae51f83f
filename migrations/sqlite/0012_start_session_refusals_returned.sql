-- PostgreSQL's 0012 replaces the one-call session start's raised refusals with returned
-- ones. SQLite keeps the statement-by-statement path; this file keeps the two migration
-- histories numbered alike.
SELECT 1;
