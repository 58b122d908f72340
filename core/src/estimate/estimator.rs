//! Estimator: per-ad cost per purchase on *matured* data.
//!
//! Purchases keep arriving for past buckets until the attribution window
//! closes, so cost per purchase over fresh buckets is biased upward. Only
//! buckets that closed at least `maturation` ago count, and no ad is judged
//! while it is still in its learning phase.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::AdId;
use crate::money::{Money, MoneyError};
use crate::sense::ads::InsightRow;
use crate::time::{Millis, Timestamp};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EstimatorConfig {
    /// Width of an insights bucket (an hour in production).
    pub bucket: Millis,
    /// A bucket counts once it closed this long ago (the attribution window).
    pub maturation: Millis,
    /// An ad younger than this (from its first bucket with delivery) is not judged.
    pub learning: Millis,
}

/// What the estimator knows about one ad: the evidence a kill carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdEstimate {
    pub ad: AdId,
    pub first_bucket: Timestamp,
    /// Buckets starting before this are matured.
    pub matured_until: Timestamp,
    pub matured_spend: Money,
    pub matured_purchases: u32,
    pub matured_revenue: Money,
    pub in_learning: bool,
}

impl AdEstimate {
    /// Matured cost per purchase in minor units; `None` with no purchases.
    pub fn cost_per_purchase(&self) -> Option<i64> {
        (self.matured_purchases > 0).then(|| self.matured_spend.minor / i64::from(self.matured_purchases))
    }
}

/// Buckets starting before this are matured at `now`: a bucket [s, s+bucket)
/// is matured when s + bucket + maturation <= now. (What a store may fold
/// for the estimator: the store's `spend_summary`.)
pub fn matured_until(now: Timestamp, cfg: &EstimatorConfig) -> Timestamp {
    Timestamp(now.0.saturating_sub(cfg.maturation.0 + cfg.bucket.0))
}

/// Estimates every ad in `rows` (one row per ad and bucket) at `now`.
/// Takes any iterator of rows, so a caller holding them in a map need not copy.
/// Output is ordered by ad id.
pub fn estimate<'a>(
    rows: impl IntoIterator<Item = &'a InsightRow>,
    now: Timestamp,
    cfg: &EstimatorConfig,
) -> Result<Vec<AdEstimate>, MoneyError> {
    let matured_until = matured_until(now, cfg);
    let mut by_ad: BTreeMap<&AdId, AdEstimate> = BTreeMap::new();
    for row in rows {
        let zero = Money::zero(row.spend.currency);
        let est = by_ad.entry(&row.ad).or_insert_with(|| AdEstimate {
            ad: row.ad.clone(),
            first_bucket: row.bucket_start,
            matured_until,
            matured_spend: zero,
            matured_purchases: 0,
            matured_revenue: zero,
            in_learning: true,
        });
        est.first_bucket = est.first_bucket.min(row.bucket_start);
        if row.bucket_start < matured_until {
            est.matured_spend = est.matured_spend.checked_add(row.spend)?;
            est.matured_revenue = est.matured_revenue.checked_add(row.revenue)?;
            est.matured_purchases = est.matured_purchases.saturating_add(row.purchases);
        }
    }
    Ok(by_ad
        .into_values()
        .map(|mut e| {
            e.in_learning = now.since(e.first_bucket) < cfg.learning;
            e
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::money::Currency;

    pub(crate) fn row(ad: &str, bucket_min: u64, spend: i64, purchases: u32) -> InsightRow {
        InsightRow {
            ad: AdId::new(ad),
            bucket_start: Timestamp(bucket_min * 60_000),
            spend: Money::new(spend, Currency::EUR),
            purchases,
            revenue: Money::new(i64::from(purchases) * 4000, Currency::EUR),
        }
    }

    pub(crate) const CFG: EstimatorConfig =
        EstimatorConfig { bucket: Millis(60_000), maturation: Millis(180_000), learning: Millis(300_000) };

    #[test]
    fn only_matured_buckets_count() {
        let rows: Vec<_> = (0..10).map(|m| row("a", m, 100, u32::from(m == 8))).collect();
        // now = minute 10: buckets 0..6 are matured (6 + 1 + 3 <= 10).
        let est = estimate(&rows, Timestamp(600_000), &CFG).unwrap();
        assert_eq!(est[0].matured_spend.minor, 600);
        assert_eq!(est[0].matured_purchases, 0, "the purchase in bucket 8 is not matured yet");
        assert!(!est[0].in_learning);
    }

    #[test]
    fn young_ads_are_in_learning() {
        let rows = vec![row("b", 7, 100, 0)];
        let est = estimate(&rows, Timestamp(600_000), &CFG).unwrap();
        assert!(est[0].in_learning);
        assert_eq!(est[0].cost_per_purchase(), None);
    }

    #[test]
    fn mixed_currencies_are_an_error() {
        let mut rows = vec![row("c", 0, 100, 0), row("c", 1, 100, 0)];
        rows[1].spend.currency = Currency::USD;
        assert!(estimate(&rows, Timestamp(600_000), &CFG).is_err());
    }
}
