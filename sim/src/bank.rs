//! The bank in the world: Revolut Business's payment semantics as truth
//! (money.md), for the sim's hosts, the sandbox and the checker to share.
//!
//! A payment is created under its `request_id`; a second request with the
//! same id within the deduplication window (two weeks) creates nothing and
//! is answered with the duplicate-request error, and after the window it
//! creates a second payment (the documented hazard). A payment's states
//! are a function of time, fixed when it is created from the bank's own
//! ChaCha stream: `created`, then `pending`, then `completed` or
//! `declined`; a completed payment may be `reverted` later. The truth the
//! checker judges by is the list of money movements: a debit when a
//! payment completes, a credit when it is reverted.

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use dlft_core::money::Money;
use dlft_core::sense::bank::{BankError, BankTransaction, Payment, PaymentReply, TxState};
use dlft_core::time::{Millis, Timestamp};

/// How the bank's payments behave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BankConfig {
    /// From `created` to `pending`.
    pub to_pending: Millis,
    /// From `pending` to `completed` or `declined`.
    pub to_settled: Millis,
    /// Per-payment chance, in percent, of a decline.
    pub decline_pct: u32,
    /// Per-completed-payment chance, in percent, of a reversal.
    pub revert_pct: u32,
    /// From `completed` to `reverted`, for those reverted.
    pub revert_after: Millis,
    /// A repeated `request_id` within this window creates nothing.
    pub dedup_window: Millis,
}

impl Default for BankConfig {
    fn default() -> Self {
        BankConfig {
            to_pending: Millis(500),
            to_settled: Millis(2_000),
            decline_pct: 0,
            revert_pct: 0,
            revert_after: Millis(10_000),
            dedup_window: Millis(14 * 24 * 3600 * 1000),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Complete,
    Decline,
    CompleteThenRevert,
}

#[derive(Clone, Debug)]
struct Tx {
    id: String,
    payment: Payment,
    created_at: Timestamp,
    fate: Fate,
}

/// A money movement on the brand's account: what the checker compares the
/// ledger with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Movement {
    pub tx_id: String,
    pub request_id: String,
    /// Negative: money left the account; positive: a reversal brought it back.
    pub amount: Money,
    pub at: Timestamp,
    /// The brand's account it moved on.
    pub account_id: String,
    pub counterparty_id: String,
    /// The counterparty's account the payment named.
    pub counterparty_account: String,
    /// The payment's reference (the invoice).
    pub reference: String,
}

pub struct BankWorld {
    cfg: BankConfig,
    rng: ChaCha8Rng,
    /// By transaction id (`tx-000001`…).
    txs: BTreeMap<String, Tx>,
    /// The newest transaction of each request id.
    by_request: BTreeMap<String, String>,
    /// Counterparty id → its account id: a payment to anything else is refused.
    counterparties: BTreeMap<String, String>,
}

impl BankWorld {
    pub fn new(cfg: BankConfig, rng: ChaCha8Rng) -> BankWorld {
        BankWorld { cfg, rng, txs: BTreeMap::new(), by_request: BTreeMap::new(), counterparties: BTreeMap::new() }
    }

    pub fn add_counterparty(&mut self, id: &str, account_id: &str) {
        self.counterparties.insert(id.to_string(), account_id.to_string());
    }

    /// `POST /pay` at `now`.
    pub fn pay(&mut self, p: &Payment, now: Timestamp) -> Result<PaymentReply, BankError> {
        if let Some(existing) = self.by_request.get(&p.request_id).and_then(|id| self.txs.get(id))
            && now.since(existing.created_at) < self.cfg.dedup_window
        {
            return Err(BankError::DuplicateRequest);
        }
        if self.counterparties.get(&p.counterparty_id) != Some(&p.counterparty_account) {
            return Err(BankError::Rejected { code: 2101, message: "unknown counterparty or account".into() });
        }
        if p.amount.minor <= 0 {
            return Err(BankError::Rejected { code: 2101, message: "amount must be positive".into() });
        }
        let fate = if self.rng.random_range(0..100) < self.cfg.decline_pct {
            Fate::Decline
        } else if self.rng.random_range(0..100) < self.cfg.revert_pct {
            Fate::CompleteThenRevert
        } else {
            Fate::Complete
        };
        let id = format!("tx-{:06}", self.txs.len() + 1);
        self.by_request.insert(p.request_id.clone(), id.clone());
        self.txs.insert(id.clone(), Tx { id: id.clone(), payment: p.clone(), created_at: now, fate });
        Ok(PaymentReply { id, state: TxState::Created })
    }

    fn settled_at(&self, tx: &Tx) -> Timestamp {
        tx.created_at + self.cfg.to_pending + self.cfg.to_settled
    }

    fn state_at(&self, tx: &Tx, now: Timestamp) -> TxState {
        let settled = self.settled_at(tx);
        if now < tx.created_at + self.cfg.to_pending {
            TxState::Created
        } else if now < settled {
            TxState::Pending
        } else {
            match tx.fate {
                Fate::Decline => TxState::Declined,
                Fate::Complete => TxState::Completed,
                Fate::CompleteThenRevert if now < settled + self.cfg.revert_after => TxState::Completed,
                Fate::CompleteThenRevert => TxState::Reverted,
            }
        }
    }

    fn view(&self, tx: &Tx, now: Timestamp) -> BankTransaction {
        let state = self.state_at(tx, now);
        let settled = self.settled_at(tx);
        BankTransaction {
            id: tx.id.clone(),
            request_id: tx.payment.request_id.clone(),
            state,
            amount: tx.payment.amount,
            counterparty_id: Some(tx.payment.counterparty_id.clone()),
            created_at: tx.created_at,
            completed_at: matches!(state, TxState::Completed | TxState::Reverted).then_some(settled),
            reason_code: (state == TxState::Declined).then(|| "insufficient_balance".to_string()),
        }
    }

    /// `GET /transactions?request_id=…&from=…` at `now`: the newest
    /// transaction under `request_id` created at or after `from`.
    pub fn by_request_id(&self, request_id: &str, from: Timestamp, now: Timestamp) -> Option<BankTransaction> {
        let tx = self.txs.get(self.by_request.get(request_id)?)?;
        (tx.created_at >= from).then(|| self.view(tx, now))
    }

    /// The payment a transaction made (its accounts, for the wire's legs).
    pub fn payment(&self, tx_id: &str) -> Option<&Payment> {
        self.txs.get(tx_id).map(|t| &t.payment)
    }

    /// Every payment made, with its creation time and whether it was (or
    /// will be) declined: what the checker judges caps by.
    pub fn payments(&self) -> impl Iterator<Item = (&Payment, Timestamp, bool)> {
        self.txs.values().map(|t| (&t.payment, t.created_at, t.fate == Fate::Decline))
    }

    /// Every transaction as of `now`, by id.
    pub fn transactions(&self, now: Timestamp) -> Vec<BankTransaction> {
        self.txs.values().map(|t| self.view(t, now)).collect()
    }

    /// The account's money movements up to `until`, in time order (then by
    /// transaction id): the truth.
    pub fn movements(&self, until: Timestamp) -> Vec<Movement> {
        let mut out = Vec::new();
        for tx in self.txs.values() {
            if tx.fate == Fate::Decline {
                continue;
            }
            let settled = self.settled_at(tx);
            let m = |amount: Money, at| Movement {
                tx_id: tx.id.clone(),
                request_id: tx.payment.request_id.clone(),
                amount,
                at,
                account_id: tx.payment.account_id.clone(),
                counterparty_id: tx.payment.counterparty_id.clone(),
                counterparty_account: tx.payment.counterparty_account.clone(),
                reference: tx.payment.reference.clone(),
            };
            let amount = tx.payment.amount;
            if settled <= until {
                out.push(m(Money::new(-amount.minor, amount.currency), settled));
            }
            let reverted = settled + self.cfg.revert_after;
            if tx.fate == Fate::CompleteThenRevert && reverted <= until {
                out.push(m(amount, reverted));
            }
        }
        out.sort_by(|a, b| (a.at, &a.tx_id).cmp(&(b.at, &b.tx_id)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlft_core::money::Currency;
    use rand::SeedableRng;

    fn payment(request_id: &str) -> Payment {
        Payment {
            request_id: request_id.into(),
            account_id: "acc".into(),
            counterparty_id: "cp-1".into(),
            counterparty_account: "cpa-1".into(),
            amount: Money::new(12_500, Currency::EUR),
            reference: "INV-1".into(),
        }
    }

    fn bank(cfg: BankConfig) -> BankWorld {
        let mut b = BankWorld::new(cfg, ChaCha8Rng::seed_from_u64(7));
        b.add_counterparty("cp-1", "cpa-1");
        b
    }

    #[test]
    fn a_payment_settles_over_time_and_is_deduplicated() {
        let mut b = bank(BankConfig::default());
        let t0 = Timestamp(1_000);
        assert_eq!(b.pay(&payment("r1"), t0).unwrap().state, TxState::Created);
        assert_eq!(b.pay(&payment("r1"), t0 + Millis(5)), Err(BankError::DuplicateRequest), "never twice");
        let state = |b: &BankWorld, at: u64| b.by_request_id("r1", Timestamp(0), Timestamp(at)).unwrap().state;
        assert_eq!(state(&b, 1_400), TxState::Created);
        assert_eq!(state(&b, 1_600), TxState::Pending);
        assert_eq!(state(&b, 3_500), TxState::Completed);
        assert!(b.by_request_id("r2", Timestamp(0), Timestamp(3_500)).is_none());
        assert!(b.by_request_id("r1", Timestamp(2_000), Timestamp(3_500)).is_none(), "created before `from`");
        assert_eq!(b.movements(Timestamp(3_499)), vec![]);
        let moved = b.movements(Timestamp(3_500));
        assert_eq!(moved.len(), 1);
        assert_eq!((moved[0].amount.minor, moved[0].at), (-12_500, Timestamp(3_500)));
        // After the two-week window the same request id pays again: the hazard.
        let later = t0 + Millis(14 * 24 * 3600 * 1000);
        assert!(b.pay(&payment("r1"), later).is_ok());
        assert_eq!(b.transactions(later).len(), 2);
    }

    #[test]
    fn declines_move_nothing_and_reversals_bring_money_back() {
        let mut b = bank(BankConfig { decline_pct: 100, ..BankConfig::default() });
        b.pay(&payment("d"), Timestamp(0)).unwrap();
        assert_eq!(b.by_request_id("d", Timestamp(0), Timestamp(10_000)).unwrap().state, TxState::Declined);
        assert!(b.movements(Timestamp(100_000)).is_empty());

        let mut b = bank(BankConfig { revert_pct: 100, ..BankConfig::default() });
        b.pay(&payment("v"), Timestamp(0)).unwrap();
        assert_eq!(b.by_request_id("v", Timestamp(0), Timestamp(2_500)).unwrap().state, TxState::Completed);
        assert_eq!(b.by_request_id("v", Timestamp(0), Timestamp(12_500)).unwrap().state, TxState::Reverted);
        let m: Vec<i64> = b.movements(Timestamp(12_500)).iter().map(|m| m.amount.minor).collect();
        assert_eq!(m, vec![-12_500, 12_500], "the debit, then the reversal's credit");
    }

    #[test]
    fn payments_go_only_to_known_accounts() {
        let mut b = bank(BankConfig::default());
        let elsewhere = Payment { counterparty_account: "fraudster".into(), ..payment("x") };
        assert!(matches!(b.pay(&elsewhere, Timestamp(0)), Err(BankError::Rejected { .. })));
        assert!(b.transactions(Timestamp(0)).is_empty());
    }
}
