//! Policy: the kill rule. It proposes; it never acts. Whatever it proposes
//! passes through the envelope, which may refuse.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::estimate::estimator::AdEstimate;
use crate::ids::AdId;
use crate::money::Money;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillRule {
    /// Kill an ad once matured spend reaches this much per purchase, plus one
    /// purchase's worth (so zero purchases needs one full target of spend).
    pub kill_cpa: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub ad: AdId,
    pub evidence: AdEstimate,
    pub reason: String,
}

/// Whether `e` clears `cpa`: spend >= cpa * (purchases + 1). Exact in integers.
pub fn clears_kill_threshold(e: &AdEstimate, cpa: Money) -> bool {
    if e.matured_spend.currency != cpa.currency {
        return false;
    }
    let bar = i128::from(cpa.minor) * (i128::from(e.matured_purchases) + 1);
    i128::from(e.matured_spend.minor) >= bar
}

/// Proposes kills for ads that clear the rule, skipping `settled` ones (an
/// intent already exists) and ads in learning.
pub fn propose_kills(estimates: &[AdEstimate], rule: &KillRule, settled: &BTreeSet<AdId>) -> Vec<Proposal> {
    estimates
        .iter()
        .filter(|e| !settled.contains(&e.ad) && !e.in_learning)
        .filter(|e| clears_kill_threshold(e, rule.kill_cpa))
        .map(|e| Proposal {
            ad: e.ad.clone(),
            evidence: e.clone(),
            reason: format!(
                "matured spend {} over {} purchases >= {} per purchase + 1",
                e.matured_spend, e.matured_purchases, rule.kill_cpa
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use crate::time::Timestamp;

    fn est(spend: i64, purchases: u32, learning: bool) -> AdEstimate {
        AdEstimate {
            ad: AdId::new("a"),
            first_bucket: Timestamp(0),
            matured_until: Timestamp(0),
            matured_spend: Money::new(spend, Currency::EUR),
            matured_purchases: purchases,
            matured_revenue: Money::zero(Currency::EUR),
            in_learning: learning,
        }
    }

    #[test]
    fn kill_rule_table() {
        let rule = KillRule { kill_cpa: Money::new(5000, Currency::EUR) };
        let none = BTreeSet::new();
        for (spend, purchases, learning, kill) in [
            (4999, 0, false, false),
            (5000, 0, false, true),
            (9999, 1, false, false),
            (10_000, 1, false, true),
            (50_000, 0, true, false),
        ] {
            let got = !propose_kills(&[est(spend, purchases, learning)], &rule, &none).is_empty();
            assert_eq!(got, kill, "spend {spend} purchases {purchases} learning {learning}");
        }
        let settled = BTreeSet::from([AdId::new("a")]);
        assert!(propose_kills(&[est(50_000, 0, false)], &rule, &settled).is_empty());
    }
}
