-- Budgets as ledger accounts (TigerBeetle's model; core's envelope::budget).
-- A brand's declared budgets (time zone and caps), as core's JSON.
CREATE TABLE dlft_budgets (
    brand TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
-- One account per cap and period: pending + posted never exceeds the limit
-- when a reservation is made (checked under the row's lock by the writer).
CREATE TABLE dlft_budget_accounts (
    brand TEXT NOT NULL,
    purpose TEXT NOT NULL,
    currency TEXT NOT NULL,
    time_window TEXT NOT NULL,
    period TEXT NOT NULL,
    limit_minor BIGINT NOT NULL,
    pending_minor BIGINT NOT NULL CHECK (pending_minor >= 0),
    posted_minor BIGINT NOT NULL CHECK (posted_minor >= 0),
    PRIMARY KEY (brand, purpose, currency, time_window, period)
);
-- One two-phase transfer per intent that moves money (id = the intent's key):
-- pending, then posted or voided, once.
CREATE TABLE dlft_budget_transfers (
    id TEXT PRIMARY KEY,
    brand TEXT NOT NULL,
    purpose TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    state TEXT NOT NULL CHECK (state IN ('pending', 'posted', 'voided')),
    posted_minor BIGINT NOT NULL,
    opened_at BIGINT NOT NULL,
    resolved_at BIGINT,
    accounts TEXT NOT NULL
);
-- What an intent reserves when it opens (core's Reserve as JSON), if anything.
ALTER TABLE dlft_intents ADD COLUMN reserve TEXT;
