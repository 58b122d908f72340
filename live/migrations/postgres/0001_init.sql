-- DLFT store schema, version 1 (PostgreSQL).
-- Times are the runner's clock in Unix milliseconds (BIGINT), passed in by
-- the caller: the store never reads its own clock, so the sim and the SQL
-- stores share one set of semantics (core/src/store/conformance.rs).

CREATE TABLE dlft_workers (
    worker      TEXT PRIMARY KEY,
    incarnation BIGINT NOT NULL
);

CREATE SEQUENCE dlft_claim_token;

-- The hot table: live jobs only (available or running). Finished jobs are
-- moved to dlft_jobs_done in the transaction that finishes them.
CREATE TABLE dlft_jobs (
    id                BIGSERIAL PRIMARY KEY,
    kind              TEXT    NOT NULL,
    payload           TEXT    NOT NULL,
    priority          BIGINT  NOT NULL,
    run_at            BIGINT  NOT NULL,
    created_at        BIGINT  NOT NULL,
    state             TEXT    NOT NULL CHECK (state IN ('available', 'running')),
    attempt           BIGINT  NOT NULL DEFAULT 0,
    resumes           BIGINT  NOT NULL DEFAULT 0,
    interrupted       BOOLEAN NOT NULL DEFAULT FALSE,
    errors            TEXT    NOT NULL DEFAULT '[]',
    lease_token       BIGINT,
    lease_worker      TEXT,
    lease_incarnation BIGINT,
    lease_expires_at  BIGINT,
    lease_for         BIGINT,
    idempotency_key   TEXT,
    schedule          TEXT,
    checkpoint        TEXT,
    CHECK ((state = 'running') = (lease_token IS NOT NULL))
);
-- The claim's index: ready work per kind, in claim order.
CREATE INDEX dlft_jobs_ready ON dlft_jobs (kind, priority, run_at, id) WHERE state = 'available';
-- Expired leases, for re-claim and ghost amnesty.
CREATE INDEX dlft_jobs_leased ON dlft_jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX dlft_jobs_worker ON dlft_jobs (lease_worker) WHERE state = 'running';
-- At most one live job per (kind, idempotency key): finished rows leave the
-- table, so a key is free again once its job is done.
CREATE UNIQUE INDEX dlft_jobs_idempotency ON dlft_jobs (kind, idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE dlft_jobs_done (
    id                BIGINT  PRIMARY KEY,
    kind              TEXT    NOT NULL,
    payload           TEXT    NOT NULL,
    priority          BIGINT  NOT NULL,
    run_at            BIGINT  NOT NULL,
    created_at        BIGINT  NOT NULL,
    state             TEXT    NOT NULL CHECK (state IN ('completed', 'discarded')),
    attempt           BIGINT  NOT NULL,
    resumes           BIGINT  NOT NULL,
    interrupted       BOOLEAN NOT NULL,
    errors            TEXT    NOT NULL,
    lease_token       BIGINT,
    lease_worker      TEXT,
    lease_incarnation BIGINT,
    lease_expires_at  BIGINT,
    lease_for         BIGINT,
    idempotency_key   TEXT,
    schedule          TEXT,
    checkpoint        TEXT,
    finished_at       BIGINT  NOT NULL
);

CREATE TABLE dlft_schedules (
    name       TEXT PRIMARY KEY,
    enabled    BOOLEAN NOT NULL,
    reason     TEXT    NOT NULL,
    changed_at BIGINT  NOT NULL,
    last_slot  BIGINT
);

-- A (schedule, slot) fires at most once, ever.
CREATE TABLE dlft_slots (
    schedule TEXT   NOT NULL,
    slot     BIGINT NOT NULL,
    job      BIGINT NOT NULL,
    PRIMARY KEY (schedule, slot)
);

CREATE TABLE dlft_intents (
    key        TEXT PRIMARY KEY,
    ad         TEXT   NOT NULL,
    evidence   TEXT   NOT NULL,
    verdict    TEXT   NOT NULL,
    phase      TEXT   NOT NULL,
    opened_at  BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    attempts   BIGINT NOT NULL
);

CREATE TABLE dlft_actions (
    key          TEXT PRIMARY KEY,
    ad           TEXT   NOT NULL,
    kind         TEXT   NOT NULL,
    committed_at BIGINT NOT NULL
);

CREATE TABLE dlft_spend (
    ad            TEXT   NOT NULL,
    bucket_start  BIGINT NOT NULL,
    spend_minor   BIGINT NOT NULL,
    currency      TEXT   NOT NULL,
    purchases     BIGINT NOT NULL,
    revenue_minor BIGINT NOT NULL,
    revenue_currency TEXT NOT NULL,
    PRIMARY KEY (ad, bucket_start)
);

CREATE TABLE dlft_costs (
    id       BIGSERIAL PRIMARY KEY,
    call_id  TEXT    NOT NULL,
    at       BIGINT  NOT NULL,
    vendor   TEXT    NOT NULL,
    op       TEXT    NOT NULL,
    ok       BOOLEAN NOT NULL,
    minor    BIGINT  NOT NULL,
    currency TEXT    NOT NULL
);

CREATE TABLE dlft_activities (
    page TEXT PRIMARY KEY,
    body TEXT NOT NULL
);

-- One row per state transition, written in the transaction that makes it.
CREATE TABLE dlft_events (
    seq    BIGSERIAL PRIMARY KEY,
    at     BIGINT NOT NULL,
    block  TEXT   NOT NULL,
    kind   TEXT   NOT NULL,
    entity TEXT   NOT NULL,
    before TEXT   NOT NULL,
    after  TEXT   NOT NULL,
    cause  TEXT   NOT NULL
);
