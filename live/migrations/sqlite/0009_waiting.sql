-- A schedule's job waiting for its first run, found when a slot fires (the
-- slot is coalesced into it): a partial index, small as the waiting set.
CREATE INDEX dlft_jobs_waiting ON dlft_jobs (brand, schedule) WHERE state = 'available' AND attempt = 0;
