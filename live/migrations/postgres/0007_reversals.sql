-- A payout the bank reverted after it completed: its transfer is booked
-- `reversed` (the money came back) when the reversal is read; the caps
-- keep counting what left (gross), so a reversal frees no budget.
ALTER TABLE dlft_budget_transfers DROP CONSTRAINT IF EXISTS dlft_budget_transfers_state_check;
ALTER TABLE dlft_budget_transfers
    ADD CONSTRAINT dlft_budget_transfers_state_check CHECK (state IN ('pending', 'posted', 'voided', 'reversed'));
ALTER TABLE dlft_budget_transfers ADD COLUMN reversed_at BIGINT;
