-- Caps on one counterparty (payee) beside the brand's: each such cap's
-- periods are accounts of their own. '' is the brand's cap (a key column
-- cannot be NULL); every existing account is one.
ALTER TABLE dlft_budget_accounts ADD COLUMN counterparty TEXT NOT NULL DEFAULT '';
ALTER TABLE dlft_budget_accounts DROP CONSTRAINT dlft_budget_accounts_pkey;
ALTER TABLE dlft_budget_accounts ADD PRIMARY KEY (brand, purpose, currency, time_window, counterparty, period);
