-- Brands are tenants: every job, schedule, slot, intent, action, spend row,
-- cost row, allocation and event row names its brand. Rows written before
-- this version belong to the brand 'default' (an event row of a worker's own,
-- its boot, belongs to none). SQLite cannot change a primary key in place:
-- the keyed tables are rebuilt.
ALTER TABLE dlft_jobs ADD COLUMN brand TEXT NOT NULL DEFAULT 'default';
ALTER TABLE dlft_jobs_done ADD COLUMN brand TEXT NOT NULL DEFAULT 'default';
DROP INDEX dlft_jobs_ready;
CREATE INDEX dlft_jobs_ready ON dlft_jobs (kind, brand, priority, run_at, id) WHERE state = 'available';

CREATE TABLE dlft_schedules_v5 (
    brand      TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    enabled    BOOLEAN NOT NULL,
    reason     TEXT    NOT NULL,
    changed_at BIGINT  NOT NULL,
    last_slot  BIGINT,
    PRIMARY KEY (brand, name)
);
INSERT INTO dlft_schedules_v5 (brand, name, enabled, reason, changed_at, last_slot)
    SELECT 'default', name, enabled, reason, changed_at, last_slot FROM dlft_schedules;
DROP TABLE dlft_schedules;
ALTER TABLE dlft_schedules_v5 RENAME TO dlft_schedules;

CREATE TABLE dlft_slots_v5 (
    brand    TEXT   NOT NULL,
    schedule TEXT   NOT NULL,
    slot     BIGINT NOT NULL,
    job      BIGINT NOT NULL,
    PRIMARY KEY (brand, schedule, slot)
);
INSERT INTO dlft_slots_v5 (brand, schedule, slot, job) SELECT 'default', schedule, slot, job FROM dlft_slots;
DROP TABLE dlft_slots;
ALTER TABLE dlft_slots_v5 RENAME TO dlft_slots;

ALTER TABLE dlft_intents ADD COLUMN brand TEXT NOT NULL DEFAULT 'default';
CREATE INDEX dlft_intents_brand ON dlft_intents (brand, key);
ALTER TABLE dlft_actions ADD COLUMN brand TEXT NOT NULL DEFAULT 'default';
-- An ad id is one platform's: two brands' accounts may reuse one (the sim's
-- worlds do), so the spend ledger is keyed by brand too.
CREATE TABLE dlft_spend_v5 (
    brand         TEXT   NOT NULL,
    ad            TEXT   NOT NULL,
    bucket_start  BIGINT NOT NULL,
    spend_minor   BIGINT NOT NULL,
    currency      TEXT   NOT NULL,
    purchases     BIGINT NOT NULL,
    revenue_minor BIGINT NOT NULL,
    revenue_currency TEXT NOT NULL,
    PRIMARY KEY (brand, ad, bucket_start)
);
INSERT INTO dlft_spend_v5 (brand, ad, bucket_start, spend_minor, currency, purchases, revenue_minor, revenue_currency)
    SELECT 'default', ad, bucket_start, spend_minor, currency, purchases, revenue_minor, revenue_currency FROM dlft_spend;
DROP TABLE dlft_spend;
ALTER TABLE dlft_spend_v5 RENAME TO dlft_spend;
CREATE INDEX dlft_spend_brand ON dlft_spend (brand, bucket_start);
ALTER TABLE dlft_costs ADD COLUMN brand TEXT NOT NULL DEFAULT 'default';

CREATE TABLE dlft_allocations_v5 (
    brand TEXT   NOT NULL,
    slot  BIGINT NOT NULL,
    body  TEXT   NOT NULL,
    PRIMARY KEY (brand, slot)
);
INSERT INTO dlft_allocations_v5 (brand, slot, body) SELECT 'default', slot, body FROM dlft_allocations;
DROP TABLE dlft_allocations;
ALTER TABLE dlft_allocations_v5 RENAME TO dlft_allocations;

ALTER TABLE dlft_events ADD COLUMN brand TEXT;
UPDATE dlft_events SET brand = 'default' WHERE kind <> 'worker_booted';
