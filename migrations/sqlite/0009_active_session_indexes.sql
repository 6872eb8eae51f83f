-- Issue 8: the three partial indexes over active sessions shared one predicate
-- (status = 'active'), so the planner could use any of them for any query about active
-- sessions. With statistics taken while few sessions were active (after a seed, or on a
-- young database) each looked empty, and PostgreSQL picked by tie: a plate lookup or a
-- point's count scanned every active session through another index (2–4 ms at 4,000
-- active sessions, growing with them).
-- - The plate and expiry predicates now also name their own column, which only queries on
--   that column imply (`plate = $1` implies `plate IS NOT NULL`): no other query can use them.
-- - A point's active sessions are found through a full index on (point_id, status): a
--   point id is in joins, so a predicate on it would be implied by every join with points;
--   a full index is sized by real statistics, so it is never mistaken for an empty one.
-- Same names for the unique index (its violation is how a second active session for a
-- plate is refused), same uniqueness.
DROP INDEX sessions_active_plate_key;
CREATE UNIQUE INDEX sessions_active_plate_key ON sessions (plate) WHERE status = 'active' AND plate IS NOT NULL;
DROP INDEX sessions_point_active_idx;
CREATE INDEX sessions_point_status_idx ON sessions (point_id, status);
DROP INDEX sessions_active_expiry_idx;
CREATE INDEX sessions_active_expiry_idx ON sessions (expires_at) WHERE status = 'active' AND expires_at IS NOT NULL;
