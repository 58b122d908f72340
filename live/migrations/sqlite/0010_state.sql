-- A brand's keyed state rows (issue 15): a support inbox's per-thread
-- progress, the model router's breakers, so that every worker agrees.
CREATE TABLE dlft_state (
    brand TEXT NOT NULL,
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (brand, scope, key)
);
