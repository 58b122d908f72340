//! The Meta Marketing API adapter (Graph, over reqwest) for the ad-kill
//! slice: insights with paging, pause, effective_status read-back, and the
//! ad library. Wire shapes and error classification live in core
//! (`dlft_core::sense::wire::meta`); this file only moves bytes and maps
//! transport failures onto [`AdsError`]. Rate-limit replies come back as
//! `AdsError::RateLimited { retry_after }` (from the Graph code and the
//! `X-Business-Use-Case-Usage` header), and the worker schedules the retry no
//! sooner than that.
//!
//! Buckets: the real API reports `date_start` with the hourly breakdown
//! `hourly_stats_aggregated_by_advertiser_time_zone` ("13:00:00 - 13:59:59");
//! the sandbox reports `bucket_start_ms` directly (its buckets can be
//! shorter than an hour). Both decode to the same [`InsightRow`].

use std::future::Future;
use std::time::Duration;

use dlft_core::ids::{AdId, IdempotencyKey};
use dlft_core::sense::ads::{
    AdNode, AdParents, AdStatus, AdsError, AdsPlatform, BatchPause, InsightsPage, InsightsQuery, LibraryAd,
};
use dlft_core::sense::models::{ModelError, Models, Summary};
use dlft_core::sense::wire::meta;
use dlft_core::time::{LastSeen, Timestamp};
use serde_json::Value;

pub const HOURLY_BREAKDOWN: &str = "hourly_stats_aggregated_by_advertiser_time_zone";
/// The header the adapter sends the idempotency key in (Graph ignores it; the
/// sandbox records it, so "at most once" can be checked end to end).
pub const IDEMPOTENCY_HEADER: &str = "x-dlft-idempotency-key";

/// A secret read from the environment. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Clone, Debug)]
pub struct MetaConfig {
    /// `https://graph.facebook.com/v25.0`, or a sandbox's address.
    pub base_url: String,
    /// `act_123…`.
    pub account_id: String,
    pub token: Secret,
    pub timeout: Duration,
    /// Minutes east of UTC of the ad account's time zone (hourly breakdowns are in it).
    pub account_utc_offset_min: i32,
}

#[derive(Clone, Debug)]
pub struct MetaAds {
    http: reqwest::Client,
    cfg: MetaConfig,
    /// The last 2xx answer, for the health check.
    last_ok: std::sync::Arc<LastSeen>,
    /// Whose account this is (the vendor counters' `brand` label).
    brand: dlft_core::ids::BrandId,
}

impl MetaAds {
    pub fn new(cfg: MetaConfig) -> Result<MetaAds, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(cfg.timeout).build()?;
        Ok(MetaAds { http, cfg, last_ok: Default::default(), brand: Default::default() })
    }

    /// Names the brand whose account this is (the vendor counters' label).
    #[must_use]
    pub fn for_brand(mut self, brand: dlft_core::ids::BrandId) -> MetaAds {
        self.brand = brand;
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.cfg.base_url.trim_end_matches('/'), path.trim_start_matches('/'))
    }

    /// Sends a request and returns the JSON body of a 2xx reply, or the
    /// classified error.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, AdsError> {
        let sent = req.bearer_auth(self.cfg.token.expose()).send().await;
        crate::calls::observe("meta", &self.brand, &sent);
        let resp = sent.map_err(transport)?;
        let status = resp.status().as_u16();
        let usage = resp.headers().get("x-business-use-case-usage").and_then(|v| v.to_str().ok()).map(str::to_string);
        let text = resp.text().await.map_err(transport)?;
        let body: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) if status >= 500 => {
                return Err(AdsError::Transient { code: i64::from(status), message: truncate(&text) });
            }
            Err(e) => return Err(AdsError::Malformed(format!("HTTP {status}, not JSON ({e}): {}", truncate(&text)))),
        };
        if !(200..300).contains(&status) {
            return Err(meta::classify_error(status, &body, usage.as_deref()));
        }
        self.last_ok.mark(dlft_core::time::Clock::now(&crate::SystemClock));
        Ok(body)
    }

    /// When the platform last answered a call successfully, if it has.
    pub fn last_ok(&self) -> Option<Timestamp> {
        self.last_ok.get()
    }

    async fn get_insights(&self, q: &InsightsQuery) -> Result<InsightsPage, AdsError> {
        let since = date_of(q.since.0, self.cfg.account_utc_offset_min);
        let until = date_of(q.until.0.saturating_sub(1), self.cfg.account_utc_offset_min);
        let time_range = serde_json::json!({"since": since, "until": until}).to_string();
        let mut params = vec![
            ("level", "ad".to_string()),
            ("fields", "ad_id,spend,actions,action_values,account_currency".to_string()),
            ("breakdowns", HOURLY_BREAKDOWN.to_string()),
            ("time_range", time_range),
            ("since_ms", q.since.0.to_string()),
            ("until_ms", q.until.0.to_string()),
            ("limit", q.limit.to_string()),
        ];
        if let Some(after) = &q.after {
            params.push(("after", after.clone()));
        }
        let path = format!("{}/insights", self.cfg.account_id);
        let mut body = self.send(self.http.get(self.url(&path)).query(&params)).await?;
        if let Some(rows) = body.get_mut("data").and_then(Value::as_array_mut) {
            for r in rows {
                add_bucket_ms(r, self.cfg.account_utc_offset_min)?;
            }
        }
        let mut page = meta::decode_insights(&body)?;
        // Day-granular time ranges return whole days: keep the asked window.
        page.rows.retain(|r| r.bucket_start >= q.since && r.bucket_start < q.until);
        Ok(page)
    }

    async fn post_pause(&self, ad: &AdId, key: &IdempotencyKey) -> Result<(), AdsError> {
        let req = self
            .http
            .post(self.url(ad.as_str()))
            .header(IDEMPOTENCY_HEADER, key.as_str())
            .form(&[("status", "PAUSED")]);
        meta::decode_pause(&self.send(req).await?)
    }

    /// Meta's batch API: `POST /` with `batch=[…]`; the reply is one item
    /// per request, each judged alone (a batch can succeed in part).
    async fn post_pause_batch(&self, items: &[(AdId, IdempotencyKey)]) -> BatchPause {
        let batch = serde_json::to_string(&meta::encode_pause_batch(items))
            .map_err(|e| AdsError::Malformed(format!("encoding a batch: {e}")))?;
        let req = self.http.post(self.url("")).form(&[("batch", batch.as_str()), ("include_headers", "false")]);
        meta::decode_pause_batch(&self.send(req).await?, items.len())
    }

    async fn get_status(&self, ad: &AdId) -> Result<AdStatus, AdsError> {
        let req = self.http.get(self.url(ad.as_str())).query(&[("fields", "status,effective_status")]);
        meta::decode_status(&self.send(req).await?)
    }

    async fn get_parents(&self, ad: &AdId) -> Result<AdParents, AdsError> {
        let req = self.http.get(self.url(ad.as_str())).query(&[("fields", "adset_id,campaign_id")]);
        meta::decode_parents(&self.send(req).await?)
    }

    /// `POST /{adset-or-campaign-id}` with `status=PAUSED` or `ACTIVE`.
    async fn post_node(&self, node: &AdNode, paused: bool, key: &IdempotencyKey) -> Result<(), AdsError> {
        let status = if paused { "PAUSED" } else { "ACTIVE" };
        let req =
            self.http.post(self.url(&node.id)).header(IDEMPOTENCY_HEADER, key.as_str()).form(&[("status", status)]);
        meta::decode_pause(&self.send(req).await?)
    }

    async fn get_node_status(&self, node: &AdNode) -> Result<AdStatus, AdsError> {
        let req = self.http.get(self.url(&node.id)).query(&[("fields", "status,effective_status")]);
        meta::decode_status(&self.send(req).await?)
    }

    async fn get_library(&self, page: &str) -> Result<Vec<LibraryAd>, AdsError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        // Pages until an empty `data` (the archive's end), with a hard cap.
        for _ in 0..100 {
            let mut params = vec![
                ("search_page_ids", format!("[\"{page}\"]")),
                ("ad_active_status", "ACTIVE".to_string()),
                ("ad_reached_countries", "[\"ALL\"]".to_string()),
                ("fields", "id,page_id,ad_delivery_start_time".to_string()),
                ("limit", "250".to_string()),
            ];
            if let Some(a) = &after {
                params.push(("after", a.clone()));
            }
            let mut body = self.send(self.http.get(self.url("ads_archive")).query(&params)).await?;
            if let Some(rows) = body.get_mut("data").and_then(Value::as_array_mut) {
                for r in rows {
                    add_start_ms(r)?;
                }
            }
            let ads = meta::decode_archive(&body)?;
            if ads.is_empty() {
                break;
            }
            out.extend(ads);
            after = body.pointer("/paging/cursors/after").and_then(Value::as_str).map(str::to_string);
            if after.is_none() || body.pointer("/paging/next").is_none() {
                break;
            }
        }
        Ok(out)
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

/// A transport failure. A timeout may have taken effect; a connection that
/// never opened did not.
fn transport(e: reqwest::Error) -> AdsError {
    if e.is_timeout() {
        AdsError::Timeout
    } else if e.is_connect() {
        AdsError::Transient { code: 0, message: format!("connect: {e}") }
    } else if e.is_decode() || e.is_body() {
        // The reply was cut off: the request itself may have been applied.
        AdsError::Malformed(format!("reply: {e}"))
    } else {
        AdsError::Timeout
    }
}

/// The account-local date of an instant, `YYYY-MM-DD`.
fn date_of(ms: u64, offset_min: i32) -> String {
    let local = ms as i64 + i64::from(offset_min) * 60_000;
    chrono::DateTime::from_timestamp_millis(local).map_or_else(String::new, |d| d.format("%Y-%m-%d").to_string())
}

/// Sets `bucket_start_ms` from `date_start` and the hourly breakdown, when
/// the record came from the real API (the sandbox sends it already).
fn add_bucket_ms(r: &mut Value, offset_min: i32) -> Result<(), AdsError> {
    if r.get("bucket_start_ms").is_some() {
        return Ok(());
    }
    let bad = |what: &str| AdsError::Malformed(format!("insights record without {what}: {r}"));
    let date = r.get("date_start").and_then(Value::as_str).ok_or_else(|| bad("date_start"))?;
    let hours = r.get(HOURLY_BREAKDOWN).and_then(Value::as_str).ok_or_else(|| bad(HOURLY_BREAKDOWN))?;
    let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| bad("a valid date_start"))?;
    let hour: u32 = hours.get(..2).and_then(|h| h.parse().ok()).filter(|h| *h < 24).ok_or_else(|| bad("an hour"))?;
    let local = day.and_hms_opt(hour, 0, 0).ok_or_else(|| bad("an hour"))?.and_utc().timestamp_millis();
    let ms = local - i64::from(offset_min) * 60_000;
    r["bucket_start_ms"] = Value::String(ms.to_string());
    Ok(())
}

/// Sets `ad_delivery_start_time_ms` from the archive's `ad_delivery_start_time` date.
fn add_start_ms(r: &mut Value) -> Result<(), AdsError> {
    if r.get("ad_delivery_start_time_ms").is_some() {
        return Ok(());
    }
    let text = r.get("ad_delivery_start_time").and_then(Value::as_str).unwrap_or_default();
    let day = chrono::NaiveDate::parse_from_str(text.get(..10).unwrap_or_default(), "%Y-%m-%d")
        .map_err(|_| AdsError::Malformed(format!("archive record without a start date: {r}")))?;
    let ms = day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp_millis();
    r["ad_delivery_start_time_ms"] = Value::String(ms.to_string());
    Ok(())
}

impl AdsPlatform for MetaAds {
    fn insights(&self, query: &InsightsQuery) -> impl Future<Output = Result<InsightsPage, AdsError>> + Send {
        self.get_insights(query)
    }
    fn pause(&self, ad: &AdId, key: &IdempotencyKey) -> impl Future<Output = Result<(), AdsError>> + Send {
        self.post_pause(ad, key)
    }
    fn status(&self, ad: &AdId) -> impl Future<Output = Result<AdStatus, AdsError>> + Send {
        self.get_status(ad)
    }
    fn pause_batch(&self, items: &[(AdId, IdempotencyKey)]) -> impl Future<Output = BatchPause> + Send {
        self.post_pause_batch(items)
    }
    fn library(&self, page: &str) -> impl Future<Output = Result<Vec<LibraryAd>, AdsError>> + Send {
        self.get_library(page)
    }
    fn parents(&self, ad: &AdId) -> impl Future<Output = Result<AdParents, AdsError>> + Send {
        self.get_parents(ad)
    }
    fn set_node(
        &self,
        node: &AdNode,
        paused: bool,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<(), AdsError>> + Send {
        self.post_node(node, paused, key)
    }
    fn node_status(&self, node: &AdNode) -> impl Future<Output = Result<AdStatus, AdsError>> + Send {
        self.get_node_status(node)
    }
}

/// The runner has no model vendor configured yet: a scan's summarize call
/// is refused (and the scan discarded with that reason) rather than faked.
impl Models for MetaAds {
    fn summarize(
        &self,
        _call_id: &str,
        _page: &str,
        _ads: &[LibraryAd],
    ) -> impl Future<Output = Result<Summary, ModelError>> + Send {
        std::future::ready(Err(ModelError::Refused("no model vendor is configured for `dlft run`".into())))
    }
}
