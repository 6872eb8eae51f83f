-- Tariffs: immutable once published, except that their validity can be ended (retired).
-- `spec` is the normalised JSON definition (mobile-api TariffSpec); `valid_until` is the
-- authority for the end of validity.
CREATE TABLE tariffs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL,
    scope_kind      TEXT NOT NULL CHECK (scope_kind IN ('city', 'district', 'street', 'point')),
    scope_ref       TEXT NOT NULL,
    vehicle_classes TEXT NOT NULL,
    valid_from      TEXT NOT NULL,
    valid_until     TEXT,
    spec            TEXT NOT NULL,
    published_at    TEXT NOT NULL,
    published_by    INTEGER REFERENCES staff(id),
    retired_at      TEXT,
    retired_by      INTEGER REFERENCES staff(id),
    CHECK (valid_until IS NULL OR valid_until >= valid_from)
);
CREATE INDEX tariffs_scope_idx ON tariffs (scope_kind, scope_ref);

-- Bumped with every tariff change (SQLite serialises writers, so the overlap check and the
-- insert cannot interleave).
CREATE TABLE tariff_meta (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO tariff_meta (id, version) VALUES (1, 0);
