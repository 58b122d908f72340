//! The tick's decision chain, pure: estimate every ad on the ledger's
//! window, let the kill rule propose, let the envelope judge. The tick job
//! and the backtester both call it, so a backtest runs the loop's own
//! chain, not a copy of it.

use std::collections::{BTreeMap, BTreeSet};

use crate::act::intent::{Action, Evidence, Intent, NewIntent};
use crate::envelope::{EnvelopeConfig, Verdict, judge};
use crate::estimate::estimator::{AdEstimate, EstimatorConfig, estimate};
use crate::ids::{AdId, IdempotencyKey};
use crate::money::MoneyError;
use crate::propose::kill_rule::{KillRule, Proposal, propose_kills};
use crate::sense::ads::InsightRow;
use crate::time::Timestamp;

/// What one tick decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided {
    pub estimates: Vec<AdEstimate>,
    pub proposals: Vec<Proposal>,
    /// One per proposal, in order.
    pub verdicts: Vec<Verdict>,
}

impl Decided {
    /// The intents to open: one per approved proposal, with its evidence.
    pub fn intents(&self) -> Vec<NewIntent> {
        debug_assert_eq!(self.verdicts.len(), self.proposals.len(), "one verdict per proposal");
        self.verdicts
            .iter()
            .zip(&self.proposals)
            .filter(|(v, _)| v.approved())
            .map(|(v, p)| NewIntent {
                key: v.key.clone(),
                action: Action::KillAd { ad: v.ad.clone() },
                evidence: Evidence::Kill(p.evidence.clone()),
                verdict: v.clone(),
                reserve: None,
            })
            .collect()
    }
}

/// The chain over `rows` (the ledger's window) at `now`, given every intent
/// opened so far.
pub fn decide<'a>(
    rows: impl IntoIterator<Item = &'a InsightRow>,
    intents: &BTreeMap<IdempotencyKey, Intent>,
    now: Timestamp,
    estimator: &EstimatorConfig,
    kill_rule: &KillRule,
    envelope: &EnvelopeConfig,
) -> Result<Decided, MoneyError> {
    let estimates = estimate(rows, now, estimator)?;
    let settled: BTreeSet<AdId> = intents.values().filter_map(|i| i.action.killed_ad()).cloned().collect();
    let opened: BTreeSet<IdempotencyKey> = intents.keys().cloned().collect();
    let proposals = propose_kills(&estimates, kill_rule, &settled);
    let verdicts = judge(&proposals, &opened, estimates.len(), envelope, now);
    Ok(Decided { estimates, proposals, verdicts })
}
