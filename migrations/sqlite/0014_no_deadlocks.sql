-- PostgreSQL's 0014 locks a point's row FOR NO KEY UPDATE in the one-call session start, so
-- that a foreign key's check on the point never waits for it (no deadlock with extensions and
-- stops at the point). SQLite runs one writer at a time and takes no row locks; this file
-- keeps the two migration histories numbered alike.
SELECT 1;
