//! The bank port: send a payment under a deterministic request id, and read
//! it back by that id (Revolut Business's `POST /pay` and
//! `GET /transactions?request_id=…`; money.md).
//!
//! A payment's reply is never the truth: a duplicate-request error means
//! "it may exist", a timeout means "it may have happened", and `completed`
//! can still be reverted. The write-ahead machine reads back before it
//! believes anything.

use std::fmt;
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::time::{Millis, Timestamp};

/// Revolut's bound on `request_id`.
pub const REQUEST_ID_MAX: usize = 40;

/// A payment to send: from one of the brand's accounts to a known
/// counterparty's account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// Deterministic, at most [`REQUEST_ID_MAX`] characters: the bank's
    /// idempotency key.
    pub request_id: String,
    /// The brand's account the money leaves.
    pub account_id: String,
    pub counterparty_id: String,
    /// The counterparty's account (bank details) the money goes to.
    pub counterparty_account: String,
    /// Positive.
    pub amount: Money,
    /// At most 140 characters (the invoice number).
    pub reference: String,
}

/// A transaction's state (Revolut's `TransactionState`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxState {
    /// Accepted, processed asynchronously or scheduled.
    Created,
    Pending,
    Completed,
    Declined,
    Failed,
    /// Reverted, possibly after `completed`.
    Reverted,
}

impl TxState {
    pub fn as_str(self) -> &'static str {
        match self {
            TxState::Created => "created",
            TxState::Pending => "pending",
            TxState::Completed => "completed",
            TxState::Declined => "declined",
            TxState::Failed => "failed",
            TxState::Reverted => "reverted",
        }
    }
    /// Still on its way: neither moved nor refused yet.
    pub fn in_flight(self) -> bool {
        matches!(self, TxState::Created | TxState::Pending)
    }
    /// Definitely did not move money (or moved it back).
    pub fn definitely_failed(self) -> bool {
        matches!(self, TxState::Declined | TxState::Failed | TxState::Reverted)
    }
}

/// A payment as the bank shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankTransaction {
    pub id: String,
    pub request_id: String,
    pub state: TxState,
    /// What left the account (positive), in the leg's currency.
    pub amount: Money,
    pub counterparty_id: Option<String>,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    /// Why it was declined or failed.
    pub reason_code: Option<String>,
}

/// The bank's reply to a payment: its id and state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReply {
    pub id: String,
    pub state: TxState,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum BankError {
    /// No reply in time: the payment may or may not exist.
    #[error("timeout")]
    Timeout,
    /// A reply that does not parse: treated as no reply.
    #[error("garbled reply: {0}")]
    Garbled(String),
    /// 400 "duplicate request_id": a payment with this id exists (or did,
    /// within the bank's two-week window). Read it back.
    #[error("duplicate request_id")]
    DuplicateRequest,
    /// 429 (Revolut code 3162): not made; wait as told.
    #[error("rate limited (retry after {retry_after:?})")]
    RateLimited { retry_after: Millis },
    /// The access token expired or is invalid (401, code 1000): not made;
    /// a refreshed token may succeed.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Refused: validation (2xxx) or business (3xxx) error. Not made.
    #[error("rejected {code}: {message}")]
    Rejected { code: i64, message: String },
    /// 5xx: the bank failed somewhere; the payment may exist.
    #[error("server error {status}")]
    Server { status: u16 },
    /// The connection never opened: nothing was sent, nothing was made.
    #[error("unreachable: {0}")]
    Unreachable(String),
}

impl BankError {
    /// The payment may exist: read back before paying again.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            BankError::Timeout | BankError::Garbled(_) | BankError::DuplicateRequest | BankError::Server { .. }
        )
    }
}

/// The bank port.
pub trait Bank: Send + Sync {
    fn pay(&self, payment: &Payment) -> impl Future<Output = Result<PaymentReply, BankError>> + Send;
    /// The transaction made under `request_id` on or after `from` (Revolut
    /// requires a `from` and a span of at most 14 days), if any.
    fn transaction_by_request_id(
        &self,
        request_id: &str,
        from: Timestamp,
    ) -> impl Future<Output = Result<Option<BankTransaction>, BankError>> + Send;
    /// The payments (transactions made under a request id) created in
    /// `[from, to)`, newest first, at most [`LIST_MAX`]: a statement read,
    /// to find payments reverted after they completed.
    fn transactions(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> impl Future<Output = Result<Vec<BankTransaction>, BankError>> + Send;
}

/// Revolut's bound on one transactions list (`count`).
pub const LIST_MAX: usize = 1000;

/// The bank of a brand that has none: every payment is refused (not made),
/// and no transaction is ever found. A payout intent of such a brand is
/// abandoned at its attempt cap, and its reservation voided. It is also the
/// empty payables source and the shop of a brand without one
/// (`sense::shop`): the money ports a job is lent come as one bundle.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct NoBank;

impl Bank for NoBank {
    fn pay(&self, _: &Payment) -> impl Future<Output = Result<PaymentReply, BankError>> + Send {
        std::future::ready(Err(BankError::Rejected {
            code: 0,
            message: "no bank account configured for this brand".into(),
        }))
    }
    fn transaction_by_request_id(
        &self,
        _: &str,
        _: Timestamp,
    ) -> impl Future<Output = Result<Option<BankTransaction>, BankError>> + Send {
        std::future::ready(Ok(None))
    }
    fn transactions(
        &self,
        _: Timestamp,
        _: Timestamp,
    ) -> impl Future<Output = Result<Vec<BankTransaction>, BankError>> + Send {
        std::future::ready(Ok(Vec::new()))
    }
}

impl<T: Bank> Bank for &T {
    fn pay(&self, payment: &Payment) -> impl Future<Output = Result<PaymentReply, BankError>> + Send {
        (**self).pay(payment)
    }
    fn transaction_by_request_id(
        &self,
        request_id: &str,
        from: Timestamp,
    ) -> impl Future<Output = Result<Option<BankTransaction>, BankError>> + Send {
        (**self).transaction_by_request_id(request_id, from)
    }
    fn transactions(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> impl Future<Output = Result<Vec<BankTransaction>, BankError>> + Send {
        (**self).transactions(from, to)
    }
}

impl fmt::Display for TxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
