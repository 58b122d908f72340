//! Revolut Business API wire shapes for payouts (`POST /pay`,
//! `GET /transactions`, `GET /transaction/{id}`), checked against Revolut's
//! published OpenAPI document (`../shared/datasets/vendor-schemas/`).
//!
//! Amounts are JSON numbers in major units: they are converted exactly at
//! this edge (the number's shortest decimal text, at most two decimals;
//! anything else is refused), never computed with as floats.

use serde::{Deserialize, Serialize};

use crate::money::{Currency, Money};
use crate::sense::bank::{BankError, BankTransaction, Payment, PaymentReply, REQUEST_ID_MAX, TxState};
use crate::time::{Millis, Timestamp};

/// Revolut's code for a repeated `request_id` (HTTP 400).
pub const DUPLICATE_REQUEST: i64 = 3020;
/// Revolut's code for a rate-limited request (HTTP 429).
pub const RATE_LIMITED: i64 = 3162;
/// Revolut's code for an invalid or expired access token.
pub const INVALID_TOKEN: i64 = 1000;
/// Requests per minute per business.
pub const REQUESTS_PER_MINUTE: u32 = 60;
/// Access tokens expire after this long.
pub const TOKEN_LIFETIME: Millis = Millis(40 * 60 * 1000);
/// `GET /transactions` spans at most this long from `from`.
pub const TRANSACTIONS_SPAN: Millis = Millis(14 * 24 * 3600 * 1000);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    pub counterparty_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

/// `TransactionPaymentRequest`: the body of `POST /pay`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PayRequest {
    pub request_id: String,
    pub account_id: String,
    pub receiver: Receiver,
    pub amount: serde_json::Number,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// `TransferResponse`: the reply to `POST /pay`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransferResponse {
    pub id: String,
    pub state: TxState,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TxCounterparty {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

/// `TransactionLeg`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Leg {
    pub leg_id: String,
    /// Negative when money leaves the account.
    pub amount: serde_json::Number,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<serde_json::Number>,
    pub currency: String,
    pub account_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterparty: Option<TxCounterparty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<serde_json::Number>,
}

/// `Transaction` (the fields a payout needs; others are ignored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub state: TxState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related_transaction_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub legs: Vec<Leg>,
}

/// `Error`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: i64,
    pub message: String,
}

/// A JSON number in major units as exact money: its shortest decimal text
/// (which is what the sender wrote, for any amount with at most two
/// decimals), parsed without floats. More decimals, or not finite: refused.
pub fn money_of(n: &serde_json::Number, currency: Currency) -> Result<Money, String> {
    let text = if let Some(i) = n.as_i64() {
        i.to_string()
    } else {
        let f = n.as_f64().ok_or_else(|| format!("amount {n} is not a number"))?;
        if !f.is_finite() {
            return Err(format!("amount {n} is not finite"));
        }
        format!("{f}")
    };
    Money::parse_decimal(&text, currency).map_err(|e| format!("amount {n}: {e}"))
}

/// Money as the JSON number Revolut expects (major units), exactly.
pub fn number_of(m: Money) -> serde_json::Number {
    let text = m.to_decimal();
    serde_json::from_str::<serde_json::Number>(&text).expect("a decimal with two places is a JSON number")
}

/// An ISO-8601 instant (`2024-08-31T17:21:20.364171Z`) in milliseconds.
pub fn instant_of(text: &str) -> Result<Timestamp, String> {
    let t: jiff::Timestamp = text.parse().map_err(|e| format!("not an ISO-8601 instant {text:?}: {e}"))?;
    u64::try_from(t.as_millisecond()).map(Timestamp).map_err(|_| format!("instant {text:?} is before 1970"))
}

/// An instant as Revolut writes them (UTC, microseconds).
pub fn iso_of(t: Timestamp) -> String {
    let ms = i64::try_from(t.0).expect("timestamps fit i64");
    jiff::Timestamp::from_millisecond(ms).expect("in range").strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The body of `POST /pay` for a payment, or why it cannot be sent.
pub fn encode_payment(p: &Payment) -> Result<PayRequest, String> {
    if p.request_id.is_empty() || p.request_id.chars().count() > REQUEST_ID_MAX {
        return Err(format!("request_id {:?} is not 1..={REQUEST_ID_MAX} characters", p.request_id));
    }
    if p.amount.minor <= 0 {
        return Err(format!("a payment of {} is not positive", p.amount));
    }
    if p.reference.chars().count() > 140 {
        return Err(format!("reference {:?} is over 140 characters (Revolut would truncate it)", p.reference));
    }
    Ok(PayRequest {
        request_id: p.request_id.clone(),
        account_id: p.account_id.clone(),
        receiver: Receiver {
            counterparty_id: p.counterparty_id.clone(),
            account_id: Some(p.counterparty_account.clone()),
        },
        amount: number_of(p.amount),
        currency: p.amount.currency.as_str().to_string(),
        reference: (!p.reference.is_empty()).then(|| p.reference.clone()),
    })
}

/// A payment as a request body says it (the sandbox's side of `POST /pay`).
pub fn decode_payment(body: &serde_json::Value) -> Result<Payment, String> {
    let r: PayRequest = serde_json::from_value(body.clone()).map_err(|e| format!("not a payment request: {e}"))?;
    let currency = Currency::parse(&r.currency).map_err(|e| e.to_string())?;
    let amount = money_of(&r.amount, currency)?;
    let p = Payment {
        request_id: r.request_id,
        account_id: r.account_id,
        counterparty_id: r.receiver.counterparty_id,
        counterparty_account: r.receiver.account_id.ok_or("receiver.account_id is required for a bank transfer")?,
        amount,
        reference: r.reference.unwrap_or_default(),
    };
    encode_payment(&p)?;
    Ok(p)
}

pub fn decode_pay_reply(body: &serde_json::Value) -> Result<PaymentReply, BankError> {
    let r: TransferResponse =
        serde_json::from_value(body.clone()).map_err(|e| BankError::Garbled(format!("pay reply: {e}")))?;
    Ok(PaymentReply { id: r.id, state: r.state })
}

/// A transaction as a payout sees it: its outgoing leg's amount (positive).
pub fn decode_transaction(t: &Transaction) -> Result<BankTransaction, BankError> {
    let garbled = |e: String| BankError::Garbled(format!("transaction {}: {e}", t.id));
    let leg = t.legs.first().ok_or_else(|| garbled("no legs".into()))?;
    let currency = Currency::parse(&leg.currency).map_err(|e| garbled(e.to_string()))?;
    let amount = money_of(&leg.amount, currency).map_err(garbled)?;
    Ok(BankTransaction {
        id: t.id.clone(),
        request_id: t.request_id.clone().unwrap_or_default(),
        state: t.state,
        amount: Money::new(amount.minor.checked_abs().ok_or_else(|| garbled("amount overflows".into()))?, currency),
        counterparty_id: leg.counterparty.as_ref().and_then(|c| c.id.clone()),
        created_at: instant_of(&t.created_at).map_err(garbled)?,
        completed_at: t.completed_at.as_deref().map(instant_of).transpose().map_err(garbled)?,
        reason_code: t.reason_code.clone(),
    })
}

/// The reply of `GET /transactions?request_id=…`: the transaction made
/// under `request_id`, if any (other rows are ignored).
pub fn decode_transactions(body: &serde_json::Value, request_id: &str) -> Result<Option<BankTransaction>, BankError> {
    let rows: Vec<Transaction> =
        serde_json::from_value(body.clone()).map_err(|e| BankError::Garbled(format!("transactions: {e}")))?;
    let mine: Vec<&Transaction> = rows.iter().filter(|t| t.request_id.as_deref() == Some(request_id)).collect();
    match mine.as_slice() {
        [] => Ok(None),
        [one] => decode_transaction(one).map(Some),
        more => Err(BankError::Garbled(format!("{} transactions carry request_id {request_id}", more.len()))),
    }
}

/// Every payment of a transactions list (those made under a request id;
/// card payments and the like are not ours and are left out).
pub fn decode_transaction_list(body: &serde_json::Value) -> Result<Vec<BankTransaction>, BankError> {
    let rows: Vec<Transaction> =
        serde_json::from_value(body.clone()).map_err(|e| BankError::Garbled(format!("transactions: {e}")))?;
    rows.iter().filter(|t| t.request_id.is_some()).map(decode_transaction).collect()
}

/// The transaction a bank keeps, as Revolut sends it.
pub fn encode_transaction(t: &BankTransaction, account_id: &str, counterparty_account: &str) -> Transaction {
    Transaction {
        id: t.id.clone(),
        kind: "transfer".into(),
        request_id: Some(t.request_id.clone()),
        state: t.state,
        reason_code: t.reason_code.clone(),
        created_at: iso_of(t.created_at),
        updated_at: iso_of(t.completed_at.unwrap_or(t.created_at)),
        completed_at: t.completed_at.map(iso_of),
        related_transaction_id: None,
        reference: None,
        legs: vec![Leg {
            leg_id: format!("{}-0", t.id),
            amount: number_of(Money::new(-t.amount.minor, t.amount.currency)),
            fee: None,
            currency: t.amount.currency.as_str().to_string(),
            account_id: account_id.to_string(),
            counterparty: Some(TxCounterparty {
                id: t.counterparty_id.clone(),
                account_type: Some("external".into()),
                account_id: Some(counterparty_account.to_string()),
            }),
            description: None,
            balance: None,
        }],
    }
}

/// What an error reply means. `retry_after`: the `Retry-After` header in
/// seconds, when sent.
pub fn classify_error(status: u16, body: &serde_json::Value, retry_after: Option<u64>) -> BankError {
    let err: Option<ApiError> = serde_json::from_value(body.clone()).ok();
    let (code, message) = err.map_or((0, body.to_string()), |e| (e.code, e.message));
    match status {
        429 => BankError::RateLimited { retry_after: Millis::from_secs(retry_after.unwrap_or(60)) },
        400 if code == DUPLICATE_REQUEST => BankError::DuplicateRequest,
        401 => BankError::Unauthorized(message),
        _ if code == INVALID_TOKEN => BankError::Unauthorized(message),
        500..=599 => BankError::Server { status },
        _ => BankError::Rejected { code, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EUR: Currency = Currency::EUR;

    #[test]
    fn amounts_convert_exactly_at_the_edge() {
        for (text, minor) in [("10", 1000), ("1.16", 116), ("-47.8", -4780), ("0.1", 10), ("1234567.89", 123_456_789)] {
            let n: serde_json::Number = serde_json::from_str(text).unwrap();
            assert_eq!(money_of(&n, EUR).unwrap().minor, minor, "{text}");
        }
        for bad in ["1.005", "0.001", "1e-3"] {
            let n: serde_json::Number = serde_json::from_str(bad).unwrap();
            assert!(money_of(&n, EUR).is_err(), "{bad}");
        }
        for minor in [1, 10, 99, 116, 4780, 123_456_789, 9_007_199_254_740] {
            let m = Money::new(minor, EUR);
            let wire = serde_json::to_string(&number_of(m)).unwrap();
            let back: serde_json::Number = serde_json::from_str(&wire).unwrap();
            assert_eq!(money_of(&back, EUR).unwrap(), m, "{wire}");
        }
        assert_eq!(serde_json::to_string(&number_of(Money::new(1234, EUR))).unwrap(), "12.34");
    }

    fn payment() -> Payment {
        Payment {
            request_id: "pay-2026-12-inv-0042".into(),
            account_id: "af98333c-ea53-482b-93c2-1fa5e4eae671".into(),
            counterparty_id: "49c6a48b-6b58-40a0-b974-0b8c4888c8a7".into(),
            counterparty_account: "9116f03a-c074-4585-b261-18a706b3768b".into(),
            amount: Money::new(125_050, EUR),
            reference: "INV-0042".into(),
        }
    }

    #[test]
    fn a_payment_round_trips_and_bad_ones_are_refused() {
        let body = serde_json::to_value(encode_payment(&payment()).unwrap()).unwrap();
        assert_eq!(body["amount"], json!(1250.5));
        assert_eq!(body["receiver"]["account_id"], "9116f03a-c074-4585-b261-18a706b3768b");
        assert_eq!(decode_payment(&body).unwrap(), payment());
        let long = Payment { request_id: "x".repeat(41), ..payment() };
        assert!(encode_payment(&long).unwrap_err().contains("1..=40"));
        assert!(encode_payment(&Payment { amount: Money::new(0, EUR), ..payment() }).is_err());
        let mut odd = body.clone();
        odd["amount"] = json!(12.345);
        assert!(decode_payment(&odd).unwrap_err().contains("12.345"));
    }

    #[test]
    fn errors_are_classified_as_revolut_documents_them() {
        let dup = json!({"code": 3020, "message": "Duplicate request: 1f0f3850"});
        assert_eq!(classify_error(400, &dup, None), BankError::DuplicateRequest);
        assert!(classify_error(400, &dup, None).outcome_unknown(), "a duplicate means: read it back");
        let limited = classify_error(429, &json!({"code": 3162, "message": "Too many requests"}), Some(7));
        assert_eq!(limited, BankError::RateLimited { retry_after: Millis(7_000) });
        let token = classify_error(401, &json!({"code": 1000, "message": "Invalid or expired token"}), None);
        assert!(matches!(token, BankError::Unauthorized(_)));
        let bearer = classify_error(400, &json!({"code": 3287, "message": "charge_bearer"}), None);
        assert!(matches!(bearer, BankError::Rejected { code: 3287, .. }) && !bearer.outcome_unknown());
        assert!(classify_error(503, &json!("oops"), None).outcome_unknown());
    }

    #[test]
    fn a_transaction_reads_back_with_its_outgoing_amount() {
        let t = BankTransaction {
            id: "tx-1".into(),
            request_id: "pay-1".into(),
            state: TxState::Completed,
            amount: Money::new(116, EUR),
            counterparty_id: Some("cp-1".into()),
            created_at: Timestamp(1_725_124_880_364),
            completed_at: Some(Timestamp(1_725_124_881_000)),
            reason_code: None,
        };
        let wire = encode_transaction(&t, "acc-1", "cpa-1");
        let body = serde_json::to_value(vec![wire.clone()]).unwrap();
        assert_eq!(body[0]["legs"][0]["amount"], json!(-1.16));
        assert_eq!(body[0]["created_at"], "2024-08-31T17:21:20.364000Z");
        assert_eq!(decode_transactions(&body, "pay-1").unwrap(), Some(t));
        assert_eq!(decode_transactions(&body, "pay-2").unwrap(), None);
        let twice = serde_json::to_value(vec![wire.clone(), wire]).unwrap();
        assert!(matches!(decode_transactions(&twice, "pay-1"), Err(BankError::Garbled(_))));
    }
}
