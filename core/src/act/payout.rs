//! A supplier payout as a write-ahead action: the payment (Revolut's
//! `POST /pay` under a deterministic `request_id`) and its read-back (the
//! transaction found by that `request_id`). The machine does the rest; the
//! money is reserved against the brand's payout caps when the intent opens
//! and posted (the amount the bank shows) when it commits.
//!
//! What the bank's states mean here: `completed` is the effect; `created`
//! and `pending` are on their way (wait, never pay again); `declined`,
//! `failed` and `reverted` are refused for good (abandon: the reservation
//! is voided); no transaction under the id means the payment was never made
//! (pay again, under the same id, which the bank deduplicates).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::IdempotencyKey;
use crate::probe::Site;
use crate::sense::bank::{Bank, BankError, Payment, REQUEST_ID_MAX, TxState};
use crate::time::{Millis, Timestamp};

use super::machine::{CallError, Effect, Found, Seen, Sites};

/// What a payout pays: the payee (a known counterparty and the account on
/// record for it) and the invoice it settles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutOrder {
    /// The brand's account the money leaves.
    pub from_account: String,
    pub counterparty_id: String,
    pub counterparty_account: String,
    pub amount: crate::money::Money,
    /// The invoice number, sent as the payment's reference.
    pub invoice: String,
}

/// The bank's idempotency key for an intent: `dlft-` and the first 35 hex
/// digits of SHA-256 over the intent's key (40 characters: Revolut's bound),
/// so that every retry of the intent, in any process, sends the same one.
pub fn request_id(key: &IdempotencyKey) -> String {
    let digest = Sha256::digest(key.as_str().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let id = format!("dlft-{}", &hex[..REQUEST_ID_MAX - 5]);
    debug_assert_eq!(id.len(), REQUEST_ID_MAX);
    id
}

/// The intent a payout the envelope approved opens: paid from
/// `from_account` to the payee's account on record, reserving the amount
/// against the brand's payout caps.
pub fn payout_intent(
    approved: &crate::envelope::payout::Approved,
    payable: &crate::envelope::payout::Payable,
    from_account: &str,
) -> crate::act::intent::NewIntent {
    use crate::act::intent::{Action, Evidence, NewIntent};
    use crate::envelope::budget::{Purpose, Reserve};
    let order = PayoutOrder {
        from_account: from_account.to_string(),
        counterparty_id: approved.counterparty_id.clone(),
        counterparty_account: approved.counterparty_account.clone(),
        amount: payable.amount,
        invoice: payable.invoice.clone(),
    };
    NewIntent {
        key: approved.key.clone(),
        action: Action::Payout { order: order.clone() },
        evidence: Evidence::Payable(order),
        verdict: approved.verdict.clone(),
        reserve: Some(Reserve {
            purpose: Purpose::Payout,
            amount: payable.amount,
            counterparty: Some(approved.counterparty_id.clone()),
        }),
    }
}

/// Pays one invoice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayoutEffect {
    pub payment: Payment,
    /// Read-backs search from here (the intent's opening, less a day):
    /// Revolut's `GET /transactions` needs a `from`.
    pub since: Timestamp,
}

impl PayoutEffect {
    pub fn new(key: &IdempotencyKey, order: &PayoutOrder, opened_at: Timestamp) -> PayoutEffect {
        PayoutEffect {
            payment: Payment {
                request_id: request_id(key),
                account_id: order.from_account.clone(),
                counterparty_id: order.counterparty_id.clone(),
                counterparty_account: order.counterparty_account.clone(),
                amount: order.amount,
                reference: order.invoice.clone(),
            },
            since: opened_at - Millis(24 * 3600 * 1000),
        }
    }
}

/// What a transaction read back means for a payout.
pub fn seen(tx: Option<&crate::sense::bank::BankTransaction>) -> Seen {
    let Some(tx) = tx else {
        return Seen { found: Found::Absent, detail: "no transaction".into(), amount: None };
    };
    let found = match tx.state {
        TxState::Completed => Found::Effected,
        TxState::Created | TxState::Pending => Found::InFlight,
        TxState::Declined | TxState::Failed | TxState::Reverted => Found::Failed,
    };
    let reason = tx.reason_code.as_deref().map_or(String::new(), |r| format!(" ({r})"));
    Seen { found, detail: format!("{} {}{reason}", tx.state, tx.amount), amount: Some(tx.amount) }
}

impl CallError for BankError {
    fn outcome_unknown(&self) -> bool {
        BankError::outcome_unknown(self)
    }
    fn retry_after(&self) -> Option<Millis> {
        match self {
            BankError::RateLimited { retry_after } => Some(*retry_after),
            // Not made: a refreshed token, or the bank back, may succeed;
            // no attempt is spent on it.
            BankError::Unauthorized(_) | BankError::Unreachable(_) => Some(Millis(0)),
            _ => None,
        }
    }
}

impl<B: Bank> Effect<B> for PayoutEffect {
    type Error = BankError;
    const VENDOR: &'static str = "revolut";
    const CALL: &'static str = "pay";
    const READ: &'static str = "transactions";
    const SITES: Sites = Sites {
        before_call: Site::PayoutBeforePay,
        after_call: Site::PayoutAfterPay,
        after_applied: Site::PayoutAfterApplied,
        after_read_back: Site::PayoutAfterReadBack,
    };

    fn subject(&self) -> &str {
        &self.payment.counterparty_id
    }

    async fn call(&self, bank: &B, _key: &IdempotencyKey) -> Result<(), BankError> {
        bank.pay(&self.payment).await.map(|_| ())
    }

    async fn read_back(&self, bank: &B) -> Result<Seen, BankError> {
        let tx = bank.transaction_by_request_id(&self.payment.request_id, self.since).await?;
        Ok(seen(tx.as_ref()))
    }

    fn unconfirmed() -> BankError {
        BankError::Timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::intent::IntentPhase;
    use crate::act::machine::{CallOutcome, after_call, after_read_back};
    use crate::money::{Currency, Money};
    use crate::sense::bank::BankTransaction;

    #[test]
    fn request_ids_are_deterministic_and_fit_revolut() {
        let a = request_id(&IdempotencyKey::new("payout/north/INV-0042"));
        assert_eq!(a.len(), 40);
        assert_eq!(a, request_id(&IdempotencyKey::new("payout/north/INV-0042")), "the same on every retry");
        assert_ne!(a, request_id(&IdempotencyKey::new("payout/south/INV-0042")));
    }

    fn tx(state: TxState) -> BankTransaction {
        BankTransaction {
            id: "tx".into(),
            request_id: "r".into(),
            state,
            amount: Money::new(500, Currency::EUR),
            counterparty_id: None,
            created_at: Timestamp(0),
            completed_at: None,
            reason_code: None,
        }
    }

    #[test]
    fn read_back_table() {
        use TxState::*;
        let phase = |t: Option<BankTransaction>| after_read_back(&seen(t.as_ref()));
        assert_eq!(phase(Some(tx(Completed))), Some(IntentPhase::Committed));
        assert_eq!(phase(Some(tx(Pending))), None, "on its way: wait, never pay again");
        assert_eq!(phase(Some(tx(Created))), None);
        for s in [Declined, Failed, Reverted] {
            assert_eq!(phase(Some(tx(s))), Some(IntentPhase::Abandoned), "{s}: refused for good");
        }
        assert_eq!(phase(None), Some(IntentPhase::Intended), "never made: pay again, same request_id");
        assert_eq!(seen(Some(&tx(Completed))).amount, Some(Money::new(500, Currency::EUR)), "posted as read");
    }

    #[test]
    fn pay_outcome_table() {
        assert_eq!(after_call(Err(BankError::DuplicateRequest)), CallOutcome::Unknown(BankError::DuplicateRequest));
        assert_eq!(
            after_call(Err(BankError::Server { status: 502 })),
            CallOutcome::Unknown(BankError::Server { status: 502 })
        );
        assert!(matches!(
            after_call(Err(BankError::RateLimited { retry_after: Millis(1) })),
            CallOutcome::Throttled(_)
        ));
        assert!(matches!(after_call(Err(BankError::Unauthorized("expired".into()))), CallOutcome::Throttled(_)));
        let rejected = BankError::Rejected { code: 2101, message: "bad".into() };
        assert!(matches!(after_call(Err(rejected)), CallOutcome::Failed(_)));
    }
}
