-- Tariffs: immutable once published, except that their validity can be ended (retired).
-- `spec` is the normalised JSON definition (mobile-api TariffSpec); `valid_until` is the
-- authority for the end of validity.
CREATE TABLE tariffs (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT NOT NULL,
    scope_kind      TEXT NOT NULL CHECK (scope_kind IN ('city', 'district', 'street', 'point')),
    scope_ref       TEXT NOT NULL,
    vehicle_classes TEXT NOT NULL,
    valid_from      TIMESTAMPTZ NOT NULL,
    valid_until     TIMESTAMPTZ,
    spec            TEXT NOT NULL,
    published_at    TIMESTAMPTZ NOT NULL,
    published_by    BIGINT REFERENCES staff(id),
    retired_at      TIMESTAMPTZ,
    retired_by      BIGINT REFERENCES staff(id),
    CHECK (valid_until IS NULL OR valid_until >= valid_from)
);
CREATE INDEX tariffs_scope_idx ON tariffs (scope_kind, scope_ref);

-- Bumped with every tariff change; also serialises publishers (row lock) so two
-- overlapping tariffs cannot both pass the overlap check.
CREATE TABLE tariff_meta (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO tariff_meta (id, version) VALUES (1, 0);
