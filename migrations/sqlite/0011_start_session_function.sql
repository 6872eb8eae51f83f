-- PostgreSQL's 0011 adds a function that starts a session in one round trip. The embedded
-- SQLite database runs in the process, where a statement costs no round trip, so it keeps
-- the statement-by-statement path; this file keeps the two migration histories numbered alike.
SELECT 1;
