-- City registry: districts, streets, parking points; staff principals and their tokens.
CREATE TABLE districts (
    id          BIGSERIAL PRIMARY KEY,
    code        TEXT NOT NULL CONSTRAINT districts_code_key UNIQUE,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE streets (
    id          BIGSERIAL PRIMARY KEY,
    district_id BIGINT NOT NULL REFERENCES districts(id),
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT streets_district_name_key UNIQUE (district_id, name)
);

CREATE TABLE points (
    id              BIGSERIAL PRIMARY KEY,
    code            TEXT NOT NULL CONSTRAINT points_code_key UNIQUE,
    name            TEXT NOT NULL,
    street_id       BIGINT NOT NULL REFERENCES streets(id),
    lat             DOUBLE PRECISION NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon             DOUBLE PRECISION NOT NULL CHECK (lon BETWEEN -180 AND 180),
    curb            TEXT,
    capacity        INTEGER NOT NULL CHECK (capacity >= 0),
    vehicle_classes TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX points_street_idx ON points (street_id);

-- One row: bumped in the same transaction as every registry change, so that every API node
-- can tell cheaply whether its in-memory point index is stale.
CREATE TABLE registry_meta (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO registry_meta (id, version) VALUES (1, 0);

CREATE TABLE staff (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'finance', 'warden', 'inspector')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE staff_districts (
    staff_id    BIGINT NOT NULL REFERENCES staff(id),
    district_id BIGINT NOT NULL REFERENCES districts(id),
    PRIMARY KEY (staff_id, district_id)
);

-- Opaque bearer tokens: only their SHA-256 is stored.
CREATE TABLE staff_tokens (
    id          BIGSERIAL PRIMARY KEY,
    staff_id    BIGINT NOT NULL REFERENCES staff(id),
    token_hash  TEXT NOT NULL CONSTRAINT staff_tokens_hash_key UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ
);
