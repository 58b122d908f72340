//! The Shopify Admin GraphQL adapter (reqwest) for refunds: `refundCreate`
//! under `@idempotent(key:)` and an order's refunds for the read-back; and
//! the mirror's orders pages (`jobs::mirror`). Wire
//! shapes, exact money and error classes live in core
//! (`dlft_core::sense::wire::shopify`); this file moves bytes, maps
//! transport failures onto [`ShopError`] (a timeout or a reply cut off may
//! have been applied; a connection that never opened was not), and paces
//! itself by the cost bucket the replies report: when the last reply left
//! fewer points than a request costs, it waits until they are restored, so
//! that steady state is never THROTTLED.

use std::sync::Arc;
use std::time::Duration;

use dlft_core::sense::shop::{RefundRequest, Shop, ShopError, ShopOrder, ShopRefund};
use dlft_core::sense::wire::shopify::{
    self, API_VERSION, MUTATION_COST, ThrottleStatus, decode_order_refunds, decode_refund_create, wait_for,
};
use serde_json::Value;

use crate::meta::Secret;

#[derive(Clone, Debug)]
pub struct ShopifyConfig {
    /// `https://{shop}.myshopify.com`, or a sandbox's `…/shopify`.
    pub base_url: String,
    /// Sent as `X-Shopify-Access-Token`.
    pub token: Secret,
    pub timeout: Duration,
}

/// What the read-back query costs up front (an order and its refunds).
const QUERY_COST: f64 = 3.0;

#[derive(Clone, Debug)]
pub struct ShopifyShop {
    http: reqwest::Client,
    cfg: ShopifyConfig,
    /// The bucket as the last reply reported it, and when that was.
    bucket: Arc<tokio::sync::Mutex<Option<(ThrottleStatus, tokio::time::Instant)>>>,
    /// Whose shop this is (the vendor counters' `brand` label).
    brand: dlft_core::ids::BrandId,
}

impl ShopifyShop {
    pub fn new(cfg: ShopifyConfig) -> Result<ShopifyShop, reqwest::Error> {
        Ok(ShopifyShop {
            http: reqwest::Client::builder().timeout(cfg.timeout).build()?,
            cfg,
            bucket: Arc::default(),
            brand: Default::default(),
        })
    }

    /// Names the brand whose shop this is (the vendor counters' label).
    #[must_use]
    pub fn for_brand(mut self, brand: dlft_core::ids::BrandId) -> ShopifyShop {
        self.brand = brand;
        self
    }

    fn url(&self) -> String {
        format!("{}/admin/api/{API_VERSION}/graphql.json", self.cfg.base_url.trim_end_matches('/'))
    }

    /// Waits until the bucket, as last reported and restored since, holds
    /// `cost` and a point to spare (the shop's clock and ours round apart).
    #[allow(clippy::disallowed_methods, reason = "the adapter paces real requests in real time")]
    async fn pace(&self, cost: f64) {
        let wait = {
            let b = self.bucket.lock().await;
            match *b {
                Some((status, at)) => {
                    let restored = at.elapsed().as_secs_f64() * status.restore_rate;
                    let now = ThrottleStatus {
                        currently_available: (status.currently_available + restored).min(status.maximum_available),
                        ..status
                    };
                    wait_for(cost + 1.0, &now)
                }
                None => dlft_core::time::Millis(0),
            }
        };
        if wait.0 > 0 {
            tokio::time::sleep(Duration::from_millis(wait.0)).await;
        }
    }

    async fn post(&self, body: &Value, cost: f64) -> Result<(u16, Value), ShopError> {
        self.pace(cost).await;
        let sent = self
            .http
            .post(self.url())
            .header("X-Shopify-Access-Token", self.cfg.token.expose())
            .json(body)
            .send()
            .await;
        crate::calls::observe("shopify", &self.brand, &sent);
        let resp = sent.map_err(transport)?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(transport)?;
        let body: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) if status >= 500 => return Err(ShopError::Server(status)),
            Err(_) if status == 401 || status == 403 => {
                return Err(ShopError::Unauthorized(text.chars().take(200).collect()));
            }
            Err(e) => return Err(ShopError::Malformed(format!("HTTP {status}, not JSON ({e})"))),
        };
        if let Some(t) = shopify::throttle_status(&body) {
            self.note_bucket(t).await;
        }
        Ok((status, body))
    }

    /// Keeps the bucket a reply reported, as of now.
    #[allow(clippy::disallowed_methods, reason = "the adapter paces real requests in real time")]
    async fn note_bucket(&self, status: ThrottleStatus) {
        *self.bucket.lock().await = Some((status, tokio::time::Instant::now()));
    }
}

/// A transport failure: a timeout or a cut-off reply may have been applied;
/// a connection that never opened was not.
fn transport(e: reqwest::Error) -> ShopError {
    if e.is_connect() {
        ShopError::Unreachable(e.to_string())
    } else if e.is_decode() || e.is_body() {
        ShopError::Malformed(format!("reply: {e}"))
    } else {
        ShopError::Timeout
    }
}

impl Shop for ShopifyShop {
    async fn refund(&self, req: &RefundRequest, key: &str) -> Result<ShopRefund, ShopError> {
        let body = shopify::encode_refund_create(req, key).map_err(|e| ShopError::Rejected(vec![e]))?;
        let (status, reply) = self.post(&body, MUTATION_COST).await?;
        decode_refund_create(status, &reply)
    }

    async fn order_refunds(&self, order_id: &str) -> Result<Vec<ShopRefund>, ShopError> {
        let (status, reply) = self.post(&shopify::encode_order_refunds(order_id), QUERY_COST).await?;
        decode_order_refunds(status, &reply)
    }

    async fn order(&self, order_id: &str) -> Result<ShopOrder, ShopError> {
        let (status, reply) = self.post(&shopify::encode_order(order_id), QUERY_COST).await?;
        shopify::decode_order(status, &reply)
    }

    async fn customer_order(&self, email: &str) -> Result<Option<dlft_core::sense::shop::CustomerOrder>, ShopError> {
        let (status, reply) = self.post(&shopify::encode_customer_order(email), QUERY_COST + 2.0).await?;
        shopify::decode_customer_order(status, &reply)
    }

    /// The mirror's page (at most `ORDERS_PAGE_FIRST` orders, the most one
    /// query may cost), paced by its requested cost.
    async fn orders_page(
        &self,
        _store: &str,
        since: dlft_core::time::Timestamp,
        after: Option<&str>,
        first: u32,
    ) -> Result<dlft_core::sense::shop::OrdersPage, ShopError> {
        use dlft_core::sense::wire::shopify_orders::{
            ORDERS_PAGE_FIRST, decode_orders_page, encode_orders_page, orders_page_cost,
        };
        let first = first.clamp(1, ORDERS_PAGE_FIRST);
        let (status, reply) =
            self.post(&encode_orders_page(since, after, first), f64::from(orders_page_cost(first))).await?;
        decode_orders_page(status, &reply)
    }
}

/// Pages of disputes read at most per call (the rest next run).
pub const MAX_DISPUTE_PAGES: usize = 40;

impl ShopifyShop {
    /// Every chargeback of the store (`shopifyPaymentsAccount.disputes`),
    /// page by page, each paced by the cost bucket.
    pub async fn disputes(&self, store: &str) -> Result<Vec<dlft_core::sense::claims::Dispute>, ShopError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_DISPUTE_PAGES {
            let cost = f64::from(shopify::DISPUTES_PAGE) + 2.0;
            let (status, reply) = self.post(&shopify::encode_disputes(after.as_deref()), cost).await?;
            let page = shopify::decode_disputes(status, &reply, store)?;
            out.extend(page.disputes);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(out)
    }
}
