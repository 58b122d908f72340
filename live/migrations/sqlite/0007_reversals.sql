-- A payout the bank reverted after it completed: its transfer is booked
-- `reversed` (the money came back) when the reversal is read; the caps
-- keep counting what left (gross), so a reversal frees no budget.
-- SQLite cannot alter a CHECK constraint: the table is rebuilt.
CREATE TABLE dlft_budget_transfers_7 (
    id TEXT PRIMARY KEY,
    brand TEXT NOT NULL,
    purpose TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    state TEXT NOT NULL CHECK (state IN ('pending', 'posted', 'voided', 'reversed')),
    posted_minor BIGINT NOT NULL,
    opened_at BIGINT NOT NULL,
    resolved_at BIGINT,
    accounts TEXT NOT NULL,
    reversed_at BIGINT
);
INSERT INTO dlft_budget_transfers_7 (id, brand, purpose, currency, amount_minor, state, posted_minor, opened_at,
    resolved_at, accounts)
    SELECT id, brand, purpose, currency, amount_minor, state, posted_minor, opened_at, resolved_at, accounts
    FROM dlft_budget_transfers;
DROP TABLE dlft_budget_transfers;
ALTER TABLE dlft_budget_transfers_7 RENAME TO dlft_budget_transfers;
