-- Caps on one counterparty (payee) beside the brand's: each such cap's
-- periods are accounts of their own. '' is the brand's cap (a key column
-- cannot be NULL); every existing account is one. SQLite cannot alter a
-- primary key: the table is rebuilt.
CREATE TABLE dlft_budget_accounts_8 (
    brand TEXT NOT NULL,
    purpose TEXT NOT NULL,
    currency TEXT NOT NULL,
    time_window TEXT NOT NULL,
    counterparty TEXT NOT NULL DEFAULT '',
    period TEXT NOT NULL,
    limit_minor BIGINT NOT NULL,
    pending_minor BIGINT NOT NULL CHECK (pending_minor >= 0),
    posted_minor BIGINT NOT NULL CHECK (posted_minor >= 0),
    PRIMARY KEY (brand, purpose, currency, time_window, counterparty, period)
);
INSERT INTO dlft_budget_accounts_8 (brand, purpose, currency, time_window, counterparty, period, limit_minor,
    pending_minor, posted_minor)
    SELECT brand, purpose, currency, time_window, '', period, limit_minor, pending_minor, posted_minor
    FROM dlft_budget_accounts;
DROP TABLE dlft_budget_accounts;
ALTER TABLE dlft_budget_accounts_8 RENAME TO dlft_budget_accounts;
