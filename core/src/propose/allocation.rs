//! The hourly bandit re-roll: Thompson Sampling over the live ads, each a
//! Beta-Bernoulli arm whose trials are whole currency units of matured spend
//! and whose successes are matured purchases. Each slot draws its posterior
//! samples from a stream seeded by the slot, so a re-run of the same slot
//! (a crash, a second worker) computes the same allocation; the store keeps
//! one allocation per slot, written with its event row.
//!
//! The result is each ad's share of the next hour's budget in basis points
//! (integers summing to exactly 10,000), the probability that it is the best
//! arm, with a floor so that no live ad is starved of data. Money never
//! passes through a float: only the probabilities do.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::estimate::bandit::{BetaSampler, stream};
use crate::estimate::estimator::AdEstimate;
use crate::ids::AdId;
use crate::time::Timestamp;

/// The re-roll's schedule name.
pub const REROLL_SCHEDULE: &str = "bandit/reroll";
/// One trial per whole currency unit (money is two-decimal minor units throughout).
pub const MINOR_PER_TRIAL: i64 = 100;
/// Posterior draws per re-roll.
pub const DRAWS: u32 = 2_000;
/// Basis points of the whole budget.
pub const WHOLE_BP: u32 = 10_000;
/// Each live ad keeps at least this share (basis points), budget permitting.
pub const FLOOR_BP: u32 = 200;
const _: () = assert!(FLOOR_BP <= WHOLE_BP && MINOR_PER_TRIAL > 0 && DRAWS > 0);

/// One ad's arm and its share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub ad: AdId,
    /// Trials: whole currency units of matured spend.
    pub trials: u64,
    pub purchases: u64,
    pub share_bp: u32,
}

/// The budget split for one slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Whose budget it splits (stamped by the store: the re-roll job's brand).
    #[serde(default)]
    pub brand: crate::ids::BrandId,
    pub slot: Timestamp,
    /// In ad order; shares sum to [`WHOLE_BP`] (empty when no ad is live).
    pub shares: Vec<Share>,
}

impl Allocation {
    /// One line for the event row: the top ads and their shares.
    pub fn summary(&self) -> String {
        let mut top: Vec<&Share> = self.shares.iter().collect();
        top.sort_by(|a, b| b.share_bp.cmp(&a.share_bp).then(a.ad.cmp(&b.ad)));
        let parts: Vec<String> =
            top.iter().take(3).map(|s| format!("{} {}.{:02}%", s.ad, s.share_bp / 100, s.share_bp % 100)).collect();
        format!("{} live ads; top {}", self.shares.len(), parts.join(", "))
    }
}

/// The event row of a new allocation: entity, `after` (the slot) and cause.
/// Every store writes the same one (`before` is the previous slot or `none`).
pub fn allocation_event(a: &Allocation) -> (String, String, String) {
    (format!("{REROLL_SCHEDULE}@{}", a.slot.0), a.slot.0.to_string(), a.summary())
}

/// Splits `WHOLE_BP` in proportion to `weights` by largest remainder: exact
/// integers, ties to the earlier index.
pub fn apportion(weights: &[u64], total: u32) -> Vec<u32> {
    let sum: u64 = weights.iter().sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<(u64, u64)> =
        weights.iter().map(|w| (w * u64::from(total) / sum, w * u64::from(total) % sum)).collect();
    let mut out: Vec<u32> = exact.iter().map(|(q, _)| *q as u32).collect();
    let short = total - out.iter().sum::<u32>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| exact[b].1.cmp(&exact[a].1).then(a.cmp(&b)));
    for &i in order.iter().take(short as usize) {
        out[i] += 1;
    }
    debug_assert_eq!(out.iter().sum::<u32>(), total, "apportion hands out exactly the whole");
    out
}

/// The allocation for `slot` over the estimates of ads not in `excluded`
/// (killed or being killed). Pure: same inputs, same allocation.
pub fn allocate(estimates: &[AdEstimate], excluded: &BTreeSet<AdId>, slot: Timestamp) -> Allocation {
    let mut arms: Vec<Share> = estimates
        .iter()
        .filter(|e| !excluded.contains(&e.ad))
        .map(|e| {
            let trials = (e.matured_spend.minor.max(0) / MINOR_PER_TRIAL) as u64;
            let purchases = u64::from(e.matured_purchases).min(trials);
            Share { ad: e.ad.clone(), trials, purchases, share_bp: 0 }
        })
        .collect();
    arms.sort_by(|a, b| a.ad.cmp(&b.ad));
    if arms.is_empty() {
        return Allocation { brand: crate::ids::BrandId::default(), slot, shares: arms };
    }
    let mut rng = stream(slot.0, "reroll", 0, 0);
    let mut wins = vec![0u64; arms.len()];
    let samplers: Vec<BetaSampler> = arms
        .iter()
        .map(|arm| BetaSampler::new(1.0 + arm.purchases as f64, 1.0 + (arm.trials - arm.purchases) as f64))
        .collect();
    for _ in 0..DRAWS {
        let mut best = (f64::NEG_INFINITY, 0usize);
        for (i, sampler) in samplers.iter().enumerate() {
            let x = sampler.sample(&mut rng);
            if x > best.0 {
                best = (x, i);
            }
        }
        wins[best.1] += 1;
    }
    // The floor first (as far as the budget allows), the rest by wins.
    let floor = FLOOR_BP.min(WHOLE_BP / arms.len() as u32);
    let rest = WHOLE_BP - floor * arms.len() as u32;
    for (arm, extra) in arms.iter_mut().zip(apportion(&wins, rest)) {
        arm.share_bp = floor + extra;
    }
    debug_assert_eq!(arms.iter().map(|a| a.share_bp).sum::<u32>(), WHOLE_BP, "shares sum to the whole");
    debug_assert!(arms.iter().all(|a| a.share_bp >= floor), "every live ad keeps its floor");
    Allocation { brand: crate::ids::BrandId::default(), slot, shares: arms }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::{Currency, Money};

    fn est(ad: &str, spend_cents: i64, purchases: u32) -> AdEstimate {
        AdEstimate {
            ad: AdId::new(ad),
            first_bucket: Timestamp(0),
            matured_until: Timestamp(0),
            matured_spend: Money::new(spend_cents, Currency::EUR),
            matured_purchases: purchases,
            matured_revenue: Money::zero(Currency::EUR),
            in_learning: false,
        }
    }

    #[test]
    fn apportion_is_exact_and_proportional() {
        assert_eq!(apportion(&[1, 1, 1], 10_000), vec![3_334, 3_333, 3_333]);
        assert_eq!(apportion(&[0, 5, 0], 100), vec![0, 100, 0]);
        assert_eq!(apportion(&[0, 0], 100), vec![0, 0]);
        let w = [7, 13, 1, 999, 0, 42];
        assert_eq!(apportion(&w, 9_000).iter().sum::<u32>(), 9_000);
    }

    #[test]
    fn the_better_arm_gets_more_the_floor_holds_and_a_slot_reproduces() {
        // €500 each: ad-1 sold 50 times, ad-2 5 times, ad-3 is killed.
        let e = [est("ad-1", 50_000, 50), est("ad-2", 50_000, 5), est("ad-3", 50_000, 60)];
        let killed = BTreeSet::from([AdId::new("ad-3")]);
        let a = allocate(&e, &killed, Timestamp(3_600_000));
        assert_eq!(a.shares.iter().map(|s| s.ad.as_str()).collect::<Vec<_>>(), vec!["ad-1", "ad-2"]);
        assert_eq!(a.shares.iter().map(|s| s.share_bp).sum::<u32>(), WHOLE_BP);
        assert!(a.shares[0].share_bp > 9_000, "{a:?}");
        assert!(a.shares[1].share_bp >= FLOOR_BP, "the floor keeps the weaker arm learning");
        assert_eq!(allocate(&e, &killed, Timestamp(3_600_000)), a, "same slot, same draws");
        assert_eq!(allocate(&[], &killed, Timestamp(0)).shares, vec![]);
        assert!(a.summary().starts_with("2 live ads; top ad-1 "), "{}", a.summary());
    }

    #[test]
    fn with_no_data_the_split_is_near_even() {
        let e: Vec<AdEstimate> = (0..4).map(|i| est(&format!("ad-{i}"), 0, 0)).collect();
        let a = allocate(&e, &BTreeSet::new(), Timestamp(0));
        for s in &a.shares {
            assert!((2_000..=3_000).contains(&s.share_bp), "{a:?}");
        }
    }
}
