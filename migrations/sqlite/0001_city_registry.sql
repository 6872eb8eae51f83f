-- City registry: districts, streets, parking points; staff principals and their tokens.
-- Timestamps are RFC 3339 UTC text (what sqlx writes for chrono::DateTime<Utc>).
CREATE TABLE districts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    code        TEXT NOT NULL CONSTRAINT districts_code_key UNIQUE,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE streets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    district_id INTEGER NOT NULL REFERENCES districts(id),
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    CONSTRAINT streets_district_name_key UNIQUE (district_id, name)
);

CREATE TABLE points (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    code            TEXT NOT NULL CONSTRAINT points_code_key UNIQUE,
    name            TEXT NOT NULL,
    street_id       INTEGER NOT NULL REFERENCES streets(id),
    lat             REAL NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon             REAL NOT NULL CHECK (lon BETWEEN -180 AND 180),
    curb            TEXT,
    capacity        INTEGER NOT NULL CHECK (capacity >= 0),
    vehicle_classes TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX points_street_idx ON points (street_id);

CREATE TABLE registry_meta (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO registry_meta (id, version) VALUES (1, 0);

CREATE TABLE staff (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'finance', 'warden', 'inspector')),
    created_at  TEXT NOT NULL
);

CREATE TABLE staff_districts (
    staff_id    INTEGER NOT NULL REFERENCES staff(id),
    district_id INTEGER NOT NULL REFERENCES districts(id),
    PRIMARY KEY (staff_id, district_id)
);

CREATE TABLE staff_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    staff_id    INTEGER NOT NULL REFERENCES staff(id),
    token_hash  TEXT NOT NULL CONSTRAINT staff_tokens_hash_key UNIQUE,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
