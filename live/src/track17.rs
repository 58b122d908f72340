//! The 17TRACK adapter (v2.2): registers tracking numbers and reads their
//! latest status, at most 40 numbers a request, paced under the key's rate
//! (about 3 requests a second), decoded by
//! `dlft_core::sense::wire::track17`. A number that is not a tracking
//! number is refused here and never sent; a number registered before counts
//! as registered, so a run repeated after a lost reply converges.

use std::time::Duration;

use serde_json::Value;

use dlft_core::sense::shipments;
use dlft_core::sense::wire::track17::{Item, REQUESTS_PER_SECOND, Registered, Track17Error, Tracked};

use crate::meta::Secret;

#[derive(Clone, Debug)]
pub struct Track17Config {
    /// `https://api.17track.net`, or a sandbox's `…/17track`.
    pub base_url: String,
    /// Sent as the `17token` header.
    pub token: Secret,
    pub timeout: Duration,
    /// Requests are sent at least this far apart (17TRACK: about 3 a second).
    pub min_interval: Duration,
}

/// Requests at least this far apart: a little under 17TRACK's rate.
pub const MIN_INTERVAL: Duration = Duration::from_millis(1_000 / REQUESTS_PER_SECOND as u64 + 20);

#[derive(Clone, Debug)]
pub struct Track17 {
    http: reqwest::Client,
    cfg: Track17Config,
    /// When the next request may go.
    pacer: crate::pace::Pacer,
    /// Whose key this is (the vendor counters' `brand` label).
    brand: dlft_core::ids::BrandId,
}

impl Track17 {
    pub fn new(cfg: Track17Config) -> Result<Track17, reqwest::Error> {
        Ok(Track17 {
            http: reqwest::Client::builder().timeout(cfg.timeout).build()?,
            cfg,
            pacer: crate::pace::Pacer::default(),
            brand: Default::default(),
        })
    }

    /// Names the brand whose key this is (the vendor counters' label).
    #[must_use]
    pub fn for_brand(mut self, brand: dlft_core::ids::BrandId) -> Track17 {
        self.brand = brand;
        self
    }

    /// Waits for this request's slot under the pace.
    async fn pace(&self) {
        self.pacer.wait(self.cfg.min_interval).await;
    }

    /// One request: the HTTP status and the body (a body that is not JSON
    /// is malformed).
    async fn post(&self, op: &str, body: &Value) -> Result<(u16, Value), Track17Error> {
        self.pace().await;
        let url = format!("{}/track/v2.2/{op}", self.cfg.base_url.trim_end_matches('/'));
        let sent = self.http.post(url).header("17token", self.cfg.token.expose()).json(body).send().await;
        crate::calls::observe("17track", &self.brand, &sent);
        let resp = sent.map_err(|e| Track17Error::Unavailable(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| Track17Error::Unavailable(e.to_string()))?;
        match serde_json::from_str(&text) {
            Ok(v) => Ok((status, v)),
            Err(_) if status != 200 => Ok((status, Value::Null)),
            Err(e) => {
                Err(Track17Error::Malformed(format!("not JSON ({e}): {}", text.chars().take(120).collect::<String>())))
            }
        }
    }

    /// Registers `items` for tracking (a number registered before counts
    /// as registered; one that is not a tracking number is refused unsent).
    pub async fn register(&self, items: &[Item]) -> Result<Registered, Track17Error> {
        shipments::each(self, "register", items).await
    }

    /// Stops tracking `items` (what a delivered or expired parcel needs no more).
    pub async fn stop(&self, items: &[Item]) -> Result<Registered, Track17Error> {
        shipments::each(self, "stoptrack", items).await
    }

    /// The latest status of each of `items`.
    pub async fn track(&self, items: &[Item]) -> Result<Tracked, Track17Error> {
        shipments::read(self, items).await
    }
}

impl shipments::Track17Post for Track17 {
    async fn post(&self, op: &str, body: Value) -> Result<(u16, Value), Track17Error> {
        Track17::post(self, op, &body).await
    }
}

/// The shipments sensor over 17TRACK's HTTP API.
impl shipments::Shipments for Track17 {
    fn tracks(&self) -> bool {
        true
    }
    async fn track(&self, numbers: &[String]) -> Result<Tracked, Track17Error> {
        shipments::register_and_read(self, numbers).await
    }
    async fn stop(&self, numbers: &[String]) -> Result<(), Track17Error> {
        shipments::stop_all(self, numbers).await
    }
}
