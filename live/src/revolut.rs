//! The Revolut Business adapter (reqwest) for payouts: `POST /pay` under the
//! intent's request id and `GET /transactions?request_id=…&from=…&to=…` to
//! read it back. Wire shapes, exact amount conversion and error
//! classification live in core (`dlft_core::sense::wire::revolut`); this
//! file only moves bytes and maps transport failures onto [`BankError`]:
//! a timeout or a reply cut off may have been applied (read back), a
//! connection that never opened was not.

use std::time::Duration;

use dlft_core::sense::bank::{Bank, BankError, BankTransaction, Payment, PaymentReply};
use dlft_core::sense::wire::revolut::{self, TRANSACTIONS_SPAN};
use dlft_core::time::Timestamp;
use serde_json::Value;

use crate::meta::Secret;

#[derive(Clone, Debug)]
pub struct RevolutConfig {
    /// `https://b2b.revolut.com/api/1.0`, or a sandbox's address.
    pub base_url: String,
    pub token: Secret,
    pub timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct RevolutBank {
    http: reqwest::Client,
    cfg: RevolutConfig,
}

impl RevolutBank {
    pub fn new(cfg: RevolutConfig) -> Result<RevolutBank, reqwest::Error> {
        Ok(RevolutBank { http: reqwest::Client::builder().timeout(cfg.timeout).build()?, cfg })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.cfg.base_url.trim_end_matches('/'), path.trim_start_matches('/'))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, BankError> {
        let resp = req.bearer_auth(self.cfg.token.expose()).send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let text = resp.text().await.map_err(transport)?;
        let body: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) if status >= 500 => return Err(BankError::Server { status }),
            Err(e) if (200..300).contains(&status) => {
                return Err(BankError::Garbled(format!("HTTP {status}, not JSON ({e})")));
            }
            Err(_) => Value::String(text.chars().take(300).collect()),
        };
        if !(200..300).contains(&status) {
            return Err(revolut::classify_error(status, &body, retry_after));
        }
        Ok(body)
    }
}

/// A transport failure: a timeout or a cut-off reply may have been applied;
/// a connection that never opened was not.
fn transport(e: reqwest::Error) -> BankError {
    if e.is_connect() {
        BankError::Unreachable(e.to_string())
    } else if e.is_decode() || e.is_body() {
        BankError::Garbled(format!("reply: {e}"))
    } else {
        BankError::Timeout
    }
}

impl Bank for RevolutBank {
    async fn pay(&self, payment: &Payment) -> Result<PaymentReply, BankError> {
        let body = revolut::encode_payment(payment).map_err(|message| BankError::Rejected { code: 0, message })?;
        let reply = self.send(self.http.post(self.url("pay")).json(&body)).await?;
        revolut::decode_pay_reply(&reply)
    }

    async fn transaction_by_request_id(
        &self,
        request_id: &str,
        from: Timestamp,
    ) -> Result<Option<BankTransaction>, BankError> {
        let query = [
            ("request_id", request_id.to_string()),
            ("from", revolut::iso_of(from)),
            ("to", revolut::iso_of(from + TRANSACTIONS_SPAN)),
            ("count", "1000".to_string()),
        ];
        let reply = self.send(self.http.get(self.url("transactions")).query(&query)).await?;
        revolut::decode_transactions(&reply, request_id)
    }

    async fn transactions(&self, from: Timestamp, to: Timestamp) -> Result<Vec<BankTransaction>, BankError> {
        let query = [
            ("from", revolut::iso_of(from)),
            ("to", revolut::iso_of(to)),
            ("type", "transfer".to_string()),
            ("count", dlft_core::sense::bank::LIST_MAX.to_string()),
        ];
        let reply = self.send(self.http.get(self.url("transactions")).query(&query)).await?;
        revolut::decode_transaction_list(&reply)
    }
}
