-- Brands are tenants: every job, schedule, slot, intent, action, spend row,
-- cost row, allocation and event row names its brand. Rows written before
-- this version belong to the brand 'default' (an event row of a worker's own,
-- its boot, belongs to none).
ALTER TABLE dlft_jobs ADD COLUMN brand TEXT NOT NULL DEFAULT 'default';
ALTER TABLE dlft_jobs ALTER COLUMN brand DROP DEFAULT;
ALTER TABLE dlft_jobs_done ADD COLUMN brand TEXT NOT NULL DEFAULT 'default';
ALTER TABLE dlft_jobs_done ALTER COLUMN brand DROP DEFAULT;
-- The claim reads ready work per (kind, brand) in claim order: one index
-- probe per brand it serves, so one brand's backlog is never scanned to
-- reach another's.
DROP INDEX dlft_jobs_ready;
CREATE INDEX dlft_jobs_ready ON dlft_jobs (kind, brand, priority, run_at, id) WHERE state = 'available';

ALTER TABLE dlft_schedules ADD COLUMN brand TEXT NOT NULL DEFAULT 'default';
ALTER TABLE dlft_schedules ALTER COLUMN brand DROP DEFAULT;
ALTER TABLE dlft_schedules DROP CONSTRAINT dlft_schedules_pkey;
ALTER TABLE dlft_schedules ADD PRIMARY KEY (brand, name);
ALTER TABLE dlft_slots ADD COLUMN brand TEXT NOT NULL DEFAULT 'default';
ALTER TABLE dlft_slots ALTER COLUMN brand DROP DEFAULT;
ALTER TABLE dlft_slots DROP CONSTRAINT dlft_slots_pkey;
ALTER TABLE dlft_slots ADD PRIMARY KEY (brand, schedule, slot);

ALTER TABLE dlft_intents ADD COLUMN brand TEXT NOT NULL DEFAULT 'default';
ALTER TABLE dlft_intents ALTER COLUMN brand DROP DEFAULT;
CREATE INDEX dlft_intents_brand ON dlft_intents (brand, key);
ALTER TABLE dlft_actions ADD COLUMN brand TEXT NOT NULL DEFAULT 'default';
ALTER TABLE dlft_actions ALTER COLUMN brand DROP DEFAULT;
-- An ad id is one platform's: two brands' accounts may reuse one (the sim's
-- worlds do), so the spend ledger is keyed by brand too.
ALTER TABLE dlft_spend ADD COLUMN brand TEXT NOT NULL DEFAULT 'default';
ALTER TABLE dlft_spend ALTER COLUMN brand DROP DEFAULT;
ALTER TABLE dlft_spend DROP CONSTRAINT dlft_spend_pkey;
ALTER TABLE dlft_spend ADD PRIMARY KEY (brand, ad, bucket_start);
CREATE INDEX dlft_spend_brand ON dlft_spend (brand, bucket_start);
ALTER TABLE dlft_costs ADD COLUMN brand TEXT NOT NULL DEFAULT 'default';
ALTER TABLE dlft_costs ALTER COLUMN brand DROP DEFAULT;

ALTER TABLE dlft_allocations ADD COLUMN brand TEXT NOT NULL DEFAULT 'default';
ALTER TABLE dlft_allocations ALTER COLUMN brand DROP DEFAULT;
ALTER TABLE dlft_allocations DROP CONSTRAINT dlft_allocations_pkey;
ALTER TABLE dlft_allocations ADD PRIMARY KEY (brand, slot);

ALTER TABLE dlft_events ADD COLUMN brand TEXT;
UPDATE dlft_events SET brand = 'default' WHERE kind <> 'worker_booted';
