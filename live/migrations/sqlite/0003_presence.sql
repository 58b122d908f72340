-- Worker presence: where a worker id's current incarnation runs (host,
-- pid) and when it last beat, so that a second process started with the
-- same worker ids can tell a live holder from a dead one.
ALTER TABLE dlft_workers ADD COLUMN host TEXT NOT NULL DEFAULT '';
ALTER TABLE dlft_workers ADD COLUMN pid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE dlft_workers ADD COLUMN beat_at BIGINT;
