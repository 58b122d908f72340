//! The Revolut Business adapter (reqwest) for payouts: `POST /pay` under the
//! intent's request id and `GET /transactions?request_id=…&from=…&to=…` to
//! read it back. Wire shapes, exact amount conversion and error
//! classification live in core (`dlft_core::sense::wire::revolut`); this
//! file only moves bytes and maps transport failures onto [`BankError`]:
//! a timeout or a reply cut off may have been applied (read back), a
//! connection that never opened was not.
//!
//! Revolut allows 60 requests a minute per business: the adapter paces its
//! requests `min_interval` apart (one second), across every clone of it.
//! Access tokens expire after 40 minutes: a request refused with 401
//! (code 1000) refreshes the token once (`POST /auth/token` with the
//! refresh token and the client assertion JWT the operator signed with the
//! app's private key, as Revolut's setup has them make it) and is sent
//! again: a refused request made nothing, so sending it again is safe.

use std::sync::Arc;
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
    /// How to get a new access token when one expires; `None`: never.
    pub refresh: Option<RefreshConfig>,
    /// Requests are sent at least this far apart (Revolut: 60 a minute).
    pub min_interval: Duration,
}

/// Revolut's refresh grant: the refresh token, the app's client id and the
/// client assertion (a JWT signed with the app's private key).
#[derive(Clone, Debug)]
pub struct RefreshConfig {
    pub refresh_token: Secret,
    pub client_id: String,
    pub client_assertion: Secret,
}

/// Revolut's rate: 60 requests a minute.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct RevolutBank {
    http: reqwest::Client,
    cfg: RevolutConfig,
    /// The access token in use (replaced by a refresh).
    token: Arc<tokio::sync::RwLock<Secret>>,
    /// When the next request may go.
    pacer: crate::pace::Pacer,
    /// Whose account this is (the vendor counters' `brand` label).
    brand: dlft_core::ids::BrandId,
}

impl RevolutBank {
    pub fn new(cfg: RevolutConfig) -> Result<RevolutBank, reqwest::Error> {
        Ok(RevolutBank {
            http: reqwest::Client::builder().timeout(cfg.timeout).build()?,
            token: Arc::new(tokio::sync::RwLock::new(cfg.token.clone())),
            pacer: crate::pace::Pacer::default(),
            cfg,
            brand: Default::default(),
        })
    }

    /// Names the brand whose account this is (the vendor counters' label).
    #[must_use]
    pub fn for_brand(mut self, brand: dlft_core::ids::BrandId) -> RevolutBank {
        self.brand = brand;
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.cfg.base_url.trim_end_matches('/'), path.trim_start_matches('/'))
    }

    /// Waits for this request's slot under the pace.
    async fn pace(&self) {
        self.pacer.wait(self.cfg.min_interval).await;
    }

    /// A new access token from the refresh grant.
    async fn refresh(&self, used: &str) -> Result<(), BankError> {
        let Some(r) = &self.cfg.refresh else {
            return Err(BankError::Unauthorized("the access token expired and no refresh is configured".into()));
        };
        let mut token = self.token.write().await;
        if token.expose() != used {
            return Ok(()); // another request refreshed it meanwhile
        }
        self.pace().await;
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", r.refresh_token.expose()),
            ("client_id", r.client_id.as_str()),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", r.client_assertion.expose()),
        ];
        let sent = self.http.post(self.url("auth/token")).form(&form).send().await;
        crate::calls::observe("revolut", &self.brand, &sent);
        let resp = sent.map_err(transport)?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.map_err(|e| BankError::Garbled(format!("token reply: {e}")))?;
        match body.get("access_token").and_then(Value::as_str) {
            Some(t) if (200..300).contains(&status) && !t.is_empty() => {
                *token = Secret::new(t.to_string());
                Ok(())
            }
            _ => Err(BankError::Unauthorized(format!("token refresh refused (HTTP {status}): {body}"))),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, BankError> {
        let retry = req.try_clone();
        let used = self.token.read().await.expose().to_string();
        match self.send_once(req, &used).await {
            Err(BankError::Unauthorized(why)) if self.cfg.refresh.is_some() => {
                self.refresh(&used).await?;
                let fresh = self.token.read().await.expose().to_string();
                match retry {
                    Some(req) => self.send_once(req, &fresh).await,
                    None => Err(BankError::Unauthorized(why)),
                }
            }
            other => other,
        }
    }

    async fn send_once(&self, req: reqwest::RequestBuilder, token: &str) -> Result<Value, BankError> {
        self.pace().await;
        let sent = req.bearer_auth(token).send().await;
        crate::calls::observe("revolut", &self.brand, &sent);
        let resp = sent.map_err(transport)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    #[allow(clippy::disallowed_methods, reason = "tokio's paused clock")]
    async fn requests_are_paced_under_revolut_s_rate_limit() {
        let bank = RevolutBank::new(RevolutConfig {
            base_url: "http://127.0.0.1:9".into(),
            token: Secret::new("t".into()),
            timeout: Duration::from_secs(5),
            refresh: None,
            min_interval: MIN_INTERVAL,
        })
        .unwrap();
        let start = tokio::time::Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let b = bank.clone();
            set.spawn(async move { b.pace().await });
        }
        set.join_all().await;
        // Six requests, clones included: the last goes five seconds after the first.
        assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(5));
    }
}
