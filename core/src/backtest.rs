//! The backtester's engine: history replayed through the loop's own
//! estimator, kill rule and envelope on a virtual clock.
//!
//! No look-ahead: a row version is revealed only once the clock reaches its
//! `ts_available`; a later version of the same bucket (late conversions)
//! replaces the earlier one when it becomes available, as the sensor's
//! upsert does in production.
//!
//! The counterfactual is exact at bucket granularity: once a kill takes
//! effect, every bucket of that ad starting at or after the effect is taken
//! out (spend saved; purchases and revenue forgone, from the final version of
//! each bucket). The bucket in which a pause lands is charged in full: the
//! history cannot say how its spend fell within it, so savings are never
//! overstated. After its kill the policy sees the ad's later buckets as zero.

pub mod refunds;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::act::intent::{Evidence, Intent, IntentPhase, fresh_intent};
use crate::decide::decide;
use crate::envelope::{EnvelopeConfig, Verdict};
use crate::estimate::estimator::EstimatorConfig;
use crate::ids::{AdId, IdempotencyKey};
use crate::money::Money;
use crate::propose::kill_rule::KillRule;
use crate::sense::ads::InsightRow;
use crate::time::{Millis, Timestamp};

/// One version of one ad's bucket, as history recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRow {
    pub ad: AdId,
    /// Start of the bucket.
    pub ts_event: Timestamp,
    /// When this version became known.
    pub ts_available: Timestamp,
    pub spend: Money,
    pub impressions: u64,
    pub clicks: u64,
    pub purchases: u32,
    pub revenue: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BacktestConfig {
    pub estimator: EstimatorConfig,
    pub kill_rule: KillRule,
    pub envelope: EnvelopeConfig,
    /// Period of the decision tick.
    pub tick_every: Millis,
    /// How far back the estimator reads.
    pub estimate_window: Millis,
    /// From a kill's approval to the pause taking effect.
    pub kill_delay: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kill {
    pub ad: AdId,
    pub decided_at: Timestamp,
    pub effective_at: Timestamp,
    pub matured_spend: Money,
    pub matured_purchases: u32,
    pub spend_saved: Money,
    pub purchases_forgone: u64,
    pub revenue_forgone: Money,
    /// Whether the ad's whole history was unprofitable (revenue < spend).
    pub was_loser: bool,
}

/// Cumulative figures at one tick, in minor units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    pub at: Timestamp,
    pub spend_history: i64,
    pub revenue_history: i64,
    pub spend_policy: i64,
    pub revenue_policy: i64,
    /// Hindsight-best profit (each ad run fully or never) minus the policy's.
    pub regret: i64,
    /// Kills approved at this tick.
    pub kills: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub ads: usize,
    pub rows: usize,
    pub ticks: u64,
    pub kills: usize,
    pub losers_killed: usize,
    pub winners_killed: usize,
    pub losers_missed: usize,
    pub spend_history: Money,
    pub revenue_history: Money,
    pub spend_saved: Money,
    pub purchases_forgone: u64,
    pub revenue_forgone: Money,
    /// Revenue minus spend under the policy.
    pub profit_policy: Money,
    pub profit_history: Money,
    /// Each ad run fully if its lifetime was profitable, else never.
    pub profit_oracle: Money,
    pub denied: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BacktestResult {
    pub totals: Totals,
    pub kills: Vec<Kill>,
    pub series: Vec<Point>,
    /// Every verdict the envelope gave, in order.
    pub verdicts: Vec<Verdict>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BacktestError {
    #[error("no history rows")]
    Empty,
    #[error("row {row}: {what}")]
    BadRow { row: usize, what: String },
    #[error("bad settings: {0}")]
    Settings(String),
}

type Key = (Timestamp, AdId);

/// Runs the backtest. Rows may come in any order; they are stably ordered by
/// (ts_available, ad, ts_event) before replay, so ties are deterministic.
pub fn run(rows: &[HistoryRow], cfg: &BacktestConfig) -> Result<BacktestResult, BacktestError> {
    if rows.is_empty() {
        return Err(BacktestError::Empty);
    }
    if cfg.tick_every.0 == 0 || cfg.estimator.bucket.0 == 0 {
        return Err(BacktestError::Settings("tick_every and bucket must be positive".into()));
    }
    let currency = rows[0].spend.currency;
    for (i, r) in rows.iter().enumerate() {
        let bad = |what: String| Err(BacktestError::BadRow { row: i, what });
        if r.spend.currency != currency || r.revenue.currency != currency {
            return bad(format!("currency differs from the first row's {currency}"));
        }
        if r.spend.minor < 0 || r.revenue.minor < 0 {
            return bad("negative money".into());
        }
        if r.ts_available < r.ts_event {
            return bad("ts_available is before ts_event".into());
        }
    }
    if cfg.kill_rule.kill_cpa.currency != currency || cfg.envelope.kill_cpa_floor.currency != currency {
        return Err(BacktestError::Settings(format!("kill thresholds must be in the history's currency {currency}")));
    }

    let mut order: Vec<&HistoryRow> = rows.iter().collect();
    order.sort_by(|a, b| (a.ts_available, &a.ad, a.ts_event).cmp(&(b.ts_available, &b.ad, b.ts_event)));
    // Final truth per bucket: the last version to become available.
    let mut truth: BTreeMap<Key, &HistoryRow> = BTreeMap::new();
    for r in &order {
        truth.insert((r.ts_event, r.ad.clone()), r);
    }
    let lifetime = lifetime_profit(&truth);

    let start = order[0].ts_available.floor_to(cfg.tick_every);
    // Run until the last row has matured and been judged once.
    let last = order.last().expect("non-empty").ts_available;
    let end = last + cfg.estimator.maturation + cfg.estimator.bucket + cfg.tick_every;
    let mut ledger: BTreeMap<Key, InsightRow> = BTreeMap::new();
    let mut effective: BTreeMap<AdId, Timestamp> = BTreeMap::new();
    let mut intents: BTreeMap<IdempotencyKey, Intent> = BTreeMap::new();
    let mut verdicts = Vec::new();
    let mut kills = Vec::new();
    let mut kills_at: BTreeMap<Timestamp, u32> = BTreeMap::new();
    let mut next = 0;
    let mut now = start;
    let mut ticks = 0;
    while now <= end {
        // Reveal what has become available by now.
        while next < order.len() && order[next].ts_available <= now {
            let r = order[next];
            let cut = effective.get(&r.ad).is_some_and(|e| r.ts_event >= *e);
            let zero = Money::zero(currency);
            ledger.insert(
                (r.ts_event, r.ad.clone()),
                InsightRow {
                    ad: r.ad.clone(),
                    bucket_start: r.ts_event,
                    spend: if cut { zero } else { r.spend },
                    purchases: if cut { 0 } else { r.purchases },
                    revenue: if cut { zero } else { r.revenue },
                },
            );
            next += 1;
        }
        let since = now - cfg.estimate_window;
        let window = ledger.range((since, AdId::new(""))..).map(|(_, row)| row);
        let decided = decide(window, &intents, now, &cfg.estimator, &cfg.kill_rule, &cfg.envelope)
            .map_err(|e| BacktestError::Settings(e.to_string()))?;
        for new in decided.intents() {
            let at = now + cfg.kill_delay;
            let Evidence::Kill(evidence) = &new.evidence else {
                return Err(BacktestError::Settings("the tick decided an action other than a kill".into()));
            };
            let ad = new.verdict.ad.clone();
            effective.insert(ad.clone(), at);
            *kills_at.entry(now).or_default() += 1;
            kills.push((ad, now, at, evidence.matured_spend, evidence.matured_purchases));
            // History cannot fail a pause: the kill commits once it takes effect.
            let mut intent = fresh_intent(&new, &crate::ids::BrandId::default(), now);
            intent.phase = IntentPhase::Committed;
            intent.updated_at = at;
            intent.attempts = 1;
            intents.insert(new.key, intent);
        }
        let tick_verdicts = decided.verdicts;
        verdicts.extend(tick_verdicts);
        ticks += 1;
        now = now + cfg.tick_every;
    }

    // Counterfactual from the final truth.
    let mut saved: BTreeMap<&AdId, (i64, u64, i64)> = BTreeMap::new();
    for ((bucket, ad), r) in &truth {
        if effective.get(ad).is_some_and(|e| bucket >= e) {
            let s = saved.entry(ad).or_default();
            s.0 += r.spend.minor;
            s.1 += u64::from(r.purchases);
            s.2 += r.revenue.minor;
        }
    }
    let money = |minor: i64| Money::new(minor, currency);
    let kills: Vec<Kill> = kills
        .into_iter()
        .map(|(ad, decided_at, effective_at, matured_spend, matured_purchases)| {
            let (s, p, r) = saved.get(&ad).copied().unwrap_or_default();
            let was_loser = lifetime.get(&ad).is_some_and(|profit| *profit < 0);
            Kill {
                ad,
                decided_at,
                effective_at,
                matured_spend,
                matured_purchases,
                spend_saved: money(s),
                purchases_forgone: p,
                revenue_forgone: money(r),
                was_loser,
            }
        })
        .collect();

    let series = series(&truth, &effective, &lifetime, &kills_at, start, end, cfg.tick_every);
    let spend_history: i64 = truth.values().map(|r| r.spend.minor).sum();
    let revenue_history: i64 = truth.values().map(|r| r.revenue.minor).sum();
    let spend_saved: i64 = kills.iter().map(|k| k.spend_saved.minor).sum();
    let revenue_forgone: i64 = kills.iter().map(|k| k.revenue_forgone.minor).sum();
    let killed: BTreeSet<&AdId> = kills.iter().map(|k| &k.ad).collect();
    let mut denied = BTreeMap::new();
    for v in &verdicts {
        if let crate::envelope::Decision::Deny(reason) = &v.decision {
            *denied.entry(format!("{reason:?}")).or_default() += 1;
        }
    }
    let totals = Totals {
        ads: lifetime.len(),
        rows: rows.len(),
        ticks,
        kills: kills.len(),
        losers_killed: kills.iter().filter(|k| k.was_loser).count(),
        winners_killed: kills.iter().filter(|k| !k.was_loser).count(),
        losers_missed: lifetime.iter().filter(|(ad, p)| **p < 0 && !killed.contains(ad)).count(),
        spend_history: money(spend_history),
        revenue_history: money(revenue_history),
        spend_saved: money(spend_saved),
        purchases_forgone: kills.iter().map(|k| k.purchases_forgone).sum(),
        revenue_forgone: money(revenue_forgone),
        profit_policy: money((revenue_history - revenue_forgone) - (spend_history - spend_saved)),
        profit_history: money(revenue_history - spend_history),
        profit_oracle: money(lifetime.values().filter(|p| **p > 0).sum()),
        denied,
    };
    Ok(BacktestResult { totals, kills, series, verdicts })
}

fn lifetime_profit(truth: &BTreeMap<Key, &HistoryRow>) -> BTreeMap<AdId, i64> {
    let mut out: BTreeMap<AdId, i64> = BTreeMap::new();
    for ((_, ad), r) in truth {
        *out.entry(ad.clone()).or_default() += r.revenue.minor - r.spend.minor;
    }
    out
}

/// Cumulative spend, revenue and regret at each tick, by bucket start.
fn series(
    truth: &BTreeMap<Key, &HistoryRow>,
    effective: &BTreeMap<AdId, Timestamp>,
    lifetime: &BTreeMap<AdId, i64>,
    kills_at: &BTreeMap<Timestamp, u32>,
    start: Timestamp,
    end: Timestamp,
    every: Millis,
) -> Vec<Point> {
    let mut out = Vec::new();
    let mut rows = truth.iter().peekable();
    let (mut sh, mut rh, mut sp, mut rp, mut oracle) = (0i64, 0i64, 0i64, 0i64, 0i64);
    let mut now = start;
    while now <= end {
        while let Some(((bucket, ad), r)) = rows.peek() {
            if *bucket > now {
                break;
            }
            sh += r.spend.minor;
            rh += r.revenue.minor;
            if effective.get(ad).is_none_or(|e| bucket < e) {
                sp += r.spend.minor;
                rp += r.revenue.minor;
            }
            if lifetime.get(ad).is_some_and(|p| *p > 0) {
                oracle += r.revenue.minor - r.spend.minor;
            }
            rows.next();
        }
        out.push(Point {
            at: now,
            spend_history: sh,
            revenue_history: rh,
            spend_policy: sp,
            revenue_policy: rp,
            regret: oracle - (rp - sp),
            kills: kills_at.get(&now).copied().unwrap_or(0),
        });
        now = now + every;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use proptest::prelude::*;

    const H: u64 = 3_600_000;

    fn cfg(cpa: i64) -> BacktestConfig {
        BacktestConfig {
            estimator: EstimatorConfig { bucket: Millis(H), maturation: Millis(2 * H), learning: Millis(3 * H) },
            kill_rule: KillRule { kill_cpa: Money::new(cpa, Currency::EUR) },
            envelope: EnvelopeConfig {
                kill_cpa_floor: Money::new(cpa / 2, Currency::EUR),
                max_attempts: 3,
                max_kill_share_pct: 100,
            },
            tick_every: Millis(H),
            estimate_window: Millis(48 * H),
            kill_delay: Millis(0),
        }
    }

    fn row(ad: &str, hour: u64, avail_h: u64, spend: i64, purchases: u32) -> HistoryRow {
        HistoryRow {
            ad: AdId::new(ad),
            ts_event: Timestamp(hour * H),
            ts_available: Timestamp(avail_h * H),
            spend: Money::new(spend, Currency::EUR),
            impressions: 100,
            clicks: 3,
            purchases,
            revenue: Money::new(i64::from(purchases) * 3000, Currency::EUR),
        }
    }

    #[test]
    fn a_loser_is_killed_and_the_counterfactual_is_exact() {
        // "bad" spends 1000/h with no purchases for 24 h; "good" sells.
        let mut rows = Vec::new();
        for h in 0..24 {
            rows.push(row("bad", h, h + 1, 1000, 0));
            rows.push(row("good", h, h + 1, 1000, 1));
        }
        let res = run(&rows, &cfg(5000)).unwrap();
        assert_eq!(res.kills.len(), 1);
        let k = &res.kills[0];
        assert_eq!(k.ad, AdId::new("bad"));
        assert!(k.was_loser);
        // Matured at now: buckets with start + 1h + 2h <= now. Spend 5000
        // matured needs 5 buckets (0..4) → now = 8h (learning passed).
        assert_eq!(k.decided_at, Timestamp(8 * H));
        // Buckets 8..23 are saved: 16 × 1000.
        assert_eq!(k.spend_saved.minor, 16_000);
        assert_eq!(k.revenue_forgone.minor, 0);
        assert_eq!(res.totals.spend_saved.minor, 16_000);
        assert_eq!(res.totals.profit_policy.minor, res.totals.profit_history.minor + 16_000);
        let last = res.series.last().unwrap();
        assert_eq!(last.spend_history - last.spend_policy, 16_000);
        assert_eq!(res.totals.losers_missed, 0);
    }

    #[test]
    fn late_conversions_replace_earlier_versions() {
        // Bucket 0 first shows no purchase, then (at hour 6) three.
        let mut rows = vec![row("a", 0, 1, 6000, 0), row("a", 0, 6, 6000, 3)];
        for h in 1..10 {
            rows.push(row("a", h, h + 1, 10, 0));
        }
        let res = run(&rows, &cfg(5000)).unwrap();
        // At hour 4 (learning over, bucket 0 matured) the ledger holds the
        // first version: 6000 spend, 0 purchases → kill at 4h, before the
        // late purchases arrive. Exactly what production would have done.
        assert_eq!(res.kills[0].decided_at, Timestamp(4 * H));
        // The final truth was profitable: a winner killed on immature data.
        assert!(!res.kills[0].was_loser);
    }

    #[test]
    fn bad_rows_are_named() {
        let mut rows = vec![row("a", 0, 1, 10, 0), row("a", 1, 2, -5, 0)];
        assert!(matches!(run(&rows, &cfg(5000)), Err(BacktestError::BadRow { row: 1, .. })));
        rows[1].spend.minor = 5;
        rows[1].ts_available = Timestamp(0);
        assert!(matches!(run(&rows, &cfg(5000)), Err(BacktestError::BadRow { row: 1, .. })));
        assert_eq!(run(&[], &cfg(5000)), Err(BacktestError::Empty));
    }

    fn arb_history() -> impl Strategy<Value = Vec<HistoryRow>> {
        prop::collection::vec((0u8..4, 0u64..30, 0u64..6, 0u64..60, 0i64..3000, 0u32..3), 1..150).prop_map(|v| {
            v.into_iter()
                .map(|(ad, hour, delay, minute, spend, purchases)| {
                    let mut r = row(&format!("ad{ad}"), hour, hour + 1 + delay, spend, purchases);
                    // Rows arrive at any minute, not only on the tick.
                    r.ts_available = r.ts_available + Millis(minute * 60_000);
                    r
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        /// No look-ahead: rewriting every row that becomes available after T
        /// (and adding rows) cannot change any verdict given at or before T.
        #[test]
        fn no_look_ahead(rows in arb_history(), cut_h in 0u64..36, noise in 0i64..100_000) {
            let cut = Timestamp(cut_h * H);
            let mut future_changed = rows.clone();
            for r in future_changed.iter_mut().filter(|r| r.ts_available > cut) {
                r.spend.minor = (r.spend.minor + noise) % 50_000;
                r.purchases = (r.purchases + 1) % 4;
            }
            future_changed.push(row("ad9", 0, cut_h + 1, noise, 0));
            let a = run(&rows, &cfg(2000)).unwrap();
            let b = run(&future_changed, &cfg(2000)).unwrap();
            // The replay's horizon follows the data; compare the ticks both runs made.
            let horizon = a.series.last().unwrap().at.min(b.series.last().unwrap().at).min(cut);
            let upto = |r: &BacktestResult| r.verdicts.iter().filter(|v| v.at <= horizon).cloned().collect::<Vec<_>>();
            prop_assert_eq!(upto(&a), upto(&b));
        }
    }
}
