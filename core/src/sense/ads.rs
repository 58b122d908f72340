//! The ads platform port: insights (spend, purchases, revenue per ad per
//! bucket), pause, and effective-status read-back.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::ids::{AdId, IdempotencyKey};
use crate::money::Money;
use crate::time::{Millis, Timestamp};

/// One ad's delivery in one time bucket, as the platform reports it now.
/// Spend of a closed bucket is final; purchases and revenue keep rising for a
/// while (late attribution), which is why the estimator waits for maturity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsightRow {
    pub ad: AdId,
    pub bucket_start: Timestamp,
    pub spend: Money,
    pub purchases: u32,
    pub revenue: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsightsQuery {
    /// First bucket start included.
    pub since: Timestamp,
    /// Buckets starting before this are included.
    pub until: Timestamp,
    /// Opaque paging cursor from the previous page.
    pub after: Option<String>,
    pub limit: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsightsPage {
    pub rows: Vec<InsightRow>,
    /// Cursor for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// An ad in a store's public ad library (Meta's `/ads_archive`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LibraryAd {
    pub id: String,
    pub started_at: Timestamp,
}

/// An ad's effective status as read back from the platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdStatus {
    Active,
    Paused,
    /// Any other effective_status (DELETED, ARCHIVED, CAMPAIGN_PAUSED, …): not
    /// spending, but not paused by us either.
    Other(String),
}

impl AdStatus {
    /// Whether the ad has stopped spending.
    pub fn is_stopped(&self) -> bool {
        !matches!(self, AdStatus::Active)
    }

    /// Whether the ad is stopped by its own status, not only by a paused
    /// ad set or campaign above it (which someone may resume): what a kill
    /// must see before it commits.
    pub fn is_stopped_itself(&self) -> bool {
        match self {
            AdStatus::Active => false,
            AdStatus::Paused => true,
            AdStatus::Other(s) => s != "ADSET_PAUSED" && s != "CAMPAIGN_PAUSED",
        }
    }
}

/// The levels above an ad that can stop it (Meta: an ad set holds ads, a
/// campaign holds ad sets): where a kill escalates when the ad's own pause
/// does not take effect.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    AdSet,
    Campaign,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::AdSet => "adset",
            Level::Campaign => "campaign",
        }
    }
}

/// One ad set or campaign.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AdNode {
    pub level: Level,
    pub id: String,
}

/// The ad set and campaign an ad belongs to (Meta: the ad's `adset_id`
/// and `campaign_id`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdParents {
    pub adset: String,
    pub campaign: String,
}

impl AdParents {
    pub fn node(&self, level: Level) -> AdNode {
        let id = match level {
            Level::AdSet => self.adset.clone(),
            Level::Campaign => self.campaign.clone(),
        };
        AdNode { level, id }
    }
}

fn no_levels() -> AdsError {
    AdsError::Permanent { code: 100, message: "this platform has no ad sets or campaigns".into() }
}

/// What can go wrong calling the ads platform. Classified once, at the
/// adapter, so the actuator's decisions depend on kinds, not on codes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdsError {
    /// No answer in time: the call may or may not have taken effect.
    #[error("ads platform timed out")]
    Timeout,
    /// A rate limit (Meta codes 4, 17, 613, 80000–80014): wait, then retry.
    #[error("rate limited (code {code}); retry after {retry_after:?}")]
    RateLimited { code: i64, retry_after: Millis },
    /// A transient platform error: retry with backoff.
    #[error("transient platform error {code}: {message}")]
    Transient { code: i64, message: String },
    /// A permanent error (bad token, bad request): retrying will not help.
    #[error("platform refused (code {code}): {message}")]
    Permanent { code: i64, message: String },
    /// The reply did not have the expected shape.
    #[error("malformed platform reply: {0}")]
    Malformed(String),
}

impl AdsError {
    /// Whether the call may have taken effect even though it reported an error.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, AdsError::Timeout | AdsError::Malformed(_))
    }
}

/// Meta's batch API takes at most 50 requests per call.
pub const PAUSE_BATCH_MAX: usize = 50;
const _: () = assert!(PAUSE_BATCH_MAX > 0 && PAUSE_BATCH_MAX <= 50, "Meta's batch API takes at most 50");

/// What a batch pause returns: the call's own error, or one result per item.
pub type BatchPause = Result<Vec<Result<(), AdsError>>, AdsError>;

/// The ads platform port.
pub trait AdsPlatform: Send + Sync {
    fn insights(&self, query: &InsightsQuery) -> impl Future<Output = Result<InsightsPage, AdsError>> + Send;

    /// Pauses an ad. The key is sent where the platform accepts one (the sim
    /// and the sandbox record it, so that "at most once" can be checked).
    fn pause(&self, ad: &AdId, key: &IdempotencyKey) -> impl Future<Output = Result<(), AdsError>> + Send;

    fn status(&self, ad: &AdId) -> impl Future<Output = Result<AdStatus, AdsError>> + Send;

    /// Pauses several ads in one call (Meta's batch API, at most
    /// [`PAUSE_BATCH_MAX`] items). The outer error is the whole call's (a
    /// timeout: any item may have taken effect); otherwise one result per item
    /// in order, and an item can fail alone: a platform may pause only part of
    /// a batch, and an item that did not complete in time is
    /// [`AdsError::Timeout`] (outcome unknown). The default calls `pause` per item.
    fn pause_batch(&self, items: &[(AdId, IdempotencyKey)]) -> impl Future<Output = BatchPause> + Send {
        async move {
            let mut out = Vec::with_capacity(items.len());
            for (ad, key) in items {
                out.push(self.pause(ad, key).await);
            }
            Ok(out)
        }
    }

    /// The active ads of a store's page in the public ad library.
    fn library(&self, page: &str) -> impl Future<Output = Result<Vec<LibraryAd>, AdsError>> + Send;

    /// The ad set and campaign of an ad. The default: a platform without them.
    fn parents(&self, ad: &AdId) -> impl Future<Output = Result<AdParents, AdsError>> + Send {
        let _ = ad;
        async { Err(no_levels()) }
    }

    /// Pauses (`paused`) or resumes an ad set or campaign, under the key.
    fn set_node(
        &self,
        node: &AdNode,
        paused: bool,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<(), AdsError>> + Send {
        let _ = (node, paused, key);
        async { Err(no_levels()) }
    }

    /// An ad set's or campaign's own status (`PAUSED` once paused itself).
    fn node_status(&self, node: &AdNode) -> impl Future<Output = Result<AdStatus, AdsError>> + Send {
        let _ = node;
        async { Err(no_levels()) }
    }
}

/// A borrowed platform is a platform: a worker lends each job its brand's.
impl<T: AdsPlatform> AdsPlatform for &T {
    fn insights(&self, query: &InsightsQuery) -> impl Future<Output = Result<InsightsPage, AdsError>> + Send {
        (**self).insights(query)
    }
    fn pause(&self, ad: &AdId, key: &IdempotencyKey) -> impl Future<Output = Result<(), AdsError>> + Send {
        (**self).pause(ad, key)
    }
    fn status(&self, ad: &AdId) -> impl Future<Output = Result<AdStatus, AdsError>> + Send {
        (**self).status(ad)
    }
    fn pause_batch(&self, items: &[(AdId, IdempotencyKey)]) -> impl Future<Output = BatchPause> + Send {
        (**self).pause_batch(items)
    }
    fn library(&self, page: &str) -> impl Future<Output = Result<Vec<LibraryAd>, AdsError>> + Send {
        (**self).library(page)
    }
    fn parents(&self, ad: &AdId) -> impl Future<Output = Result<AdParents, AdsError>> + Send {
        (**self).parents(ad)
    }
    fn set_node(
        &self,
        node: &AdNode,
        paused: bool,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<(), AdsError>> + Send {
        (**self).set_node(node, paused, key)
    }
    fn node_status(&self, node: &AdNode) -> impl Future<Output = Result<AdStatus, AdsError>> + Send {
        (**self).node_status(node)
    }
}

impl<T: AdsPlatform> AdsPlatform for std::sync::Arc<T> {
    fn insights(&self, query: &InsightsQuery) -> impl Future<Output = Result<InsightsPage, AdsError>> + Send {
        (**self).insights(query)
    }
    fn pause(&self, ad: &AdId, key: &IdempotencyKey) -> impl Future<Output = Result<(), AdsError>> + Send {
        (**self).pause(ad, key)
    }
    fn status(&self, ad: &AdId) -> impl Future<Output = Result<AdStatus, AdsError>> + Send {
        (**self).status(ad)
    }
    fn pause_batch(&self, items: &[(AdId, IdempotencyKey)]) -> impl Future<Output = BatchPause> + Send {
        (**self).pause_batch(items)
    }
    fn library(&self, page: &str) -> impl Future<Output = Result<Vec<LibraryAd>, AdsError>> + Send {
        (**self).library(page)
    }
    fn parents(&self, ad: &AdId) -> impl Future<Output = Result<AdParents, AdsError>> + Send {
        (**self).parents(ad)
    }
    fn set_node(
        &self,
        node: &AdNode,
        paused: bool,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<(), AdsError>> + Send {
        (**self).set_node(node, paused, key)
    }
    fn node_status(&self, node: &AdNode) -> impl Future<Output = Result<AdStatus, AdsError>> + Send {
        (**self).node_status(node)
    }
}

/// What a status webhook claims about one ad.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusHint {
    pub ad: AdId,
    /// The claimed effective_status, as sent (`PAUSED`, `ACTIVE`, …).
    pub status: String,
}
