-- Nightscape's store, PostgreSQL form (the SQLite form in ../sqlite says the same).
-- Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE library_files (
    path TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

-- Plan and overrides versions: one sequence, so every replica draws increasing numbers.
CREATE SEQUENCE document_version;

-- The current signed plan and overrides document per gateway, and what the gateway acked.
CREATE TABLE gateways (
    gateway TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    plan_version BIGINT,
    plan_hash TEXT,
    plan_signed TEXT,
    plan_at_ms BIGINT,
    plan_published BIGINT NOT NULL DEFAULT 0,
    overrides_version BIGINT,
    overrides_hash TEXT,
    overrides_signed TEXT,
    overrides_published BIGINT NOT NULL DEFAULT 0,
    acked_plan BIGINT,
    acked_overrides BIGINT,
    last_refusal TEXT,
    online BIGINT NOT NULL DEFAULT 0,
    state_json TEXT,
    telemetry_json TEXT,
    seen_at_ms BIGINT,
    republished_at_ms BIGINT,
    removed BIGINT NOT NULL DEFAULT 0
);

-- Bumped by every change that may alter a plan or an overrides document; publishers
-- compare it with the last one they reconciled.
CREATE TABLE generation (id BIGINT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO generation (id, value) VALUES (1, 0);

CREATE TABLE plan_history (
    gateway TEXT NOT NULL,
    version BIGINT NOT NULL,
    content_hash TEXT NOT NULL,
    issued_at_ms BIGINT NOT NULL,
    effective_from_ms BIGINT NOT NULL,
    PRIMARY KEY (gateway, version)
);

CREATE TABLE overrides (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    kind TEXT NOT NULL,
    scene TEXT,
    brightness_pct DOUBLE PRECISION,
    from_ms BIGINT NOT NULL,
    until_ms BIGINT,
    created_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    released_at_ms BIGINT,
    released_by TEXT
);

CREATE TABLE events (
    gateway TEXT NOT NULL,
    id TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    controller TEXT,
    message TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (gateway, id)
);
CREATE INDEX events_at ON events (at_ms);

CREATE TABLE faults (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gateway TEXT NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    opened_at_ms BIGINT NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at_ms BIGINT,
    closed_at_ms BIGINT
);
CREATE UNIQUE INDEX faults_one_open ON faults (gateway, source, kind) WHERE status <> 'closed';

CREATE TABLE energy (
    site TEXT NOT NULL,
    day TEXT NOT NULL,
    wh DOUBLE PRECISION NOT NULL,
    lit_minutes DOUBLE PRECISION NOT NULL,
    source TEXT NOT NULL,
    last_at_ms BIGINT NOT NULL,
    PRIMARY KEY (site, day)
);

CREATE TABLE users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    sites TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- Sessions and API tokens are stored by the SHA-256 of their secret.
CREATE TABLE sessions (
    hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);

CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    label TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);

CREATE TABLE audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT
);
