-- Which process wrote each event row (`name/pid` of the runner that opened
-- the store; NULL for rows written before, or by a process that names none),
-- so a runner logs its own workers' events and not every other runner's.
ALTER TABLE dlft_events ADD COLUMN origin TEXT;
