-- The bandit re-roll's budget split, one row per schedule slot (the first
-- write of a slot stands; a re-run of the slot changes nothing).
CREATE TABLE dlft_allocations (
    slot BIGINT PRIMARY KEY,
    body TEXT   NOT NULL
);
