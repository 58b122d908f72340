//! The loop's decision chains, pure. The tick's: estimate every ad on the
//! ledger's window, let the kill rule propose, let the envelope judge. The
//! refund job's ([`judge_claim`]): the claimant's identity and risk tier,
//! the refund policy's proposal, the envelope's judgement. The jobs and the
//! backtester both call them, so a backtest runs the loop's own chains,
//! not copies of them.

use std::collections::{BTreeMap, BTreeSet};

use crate::act::intent::{Action, Evidence, Intent, NewIntent};
use crate::config::RefundConfig;
use crate::envelope::refund::{OrderFacts, RefundJudged, TierCaps, judge_refund, refund_key};
use crate::envelope::{EnvelopeConfig, Verdict, judge};
use crate::estimate::estimator::{AdEstimate, EstimatorConfig, estimate};
use crate::estimate::identity::Profile;
use crate::estimate::risk::{RiskTier, TierChange, tier_of};
use crate::ids::BrandId;
use crate::ids::{AdId, IdempotencyKey};
use crate::money::Money;
use crate::money::MoneyError;
use crate::propose::kill_rule::{KillRule, Proposal, propose_kills};
use crate::propose::refund::{RefundCase, RefundProposal, propose};
use crate::sense::ads::InsightRow;
use crate::sense::claims::ClaimRecord;
use crate::sense::shop::ShopOrder;
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

/// What the refund chain made of one claim.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant, reason = "one per claim, moved once")]
pub enum ClaimOutcome {
    /// The order's facts do not allow a refund decision (no payment to
    /// refund to, currencies that differ): refused as malformed.
    Malformed(String),
    /// Its refund key was opened already (by a run that died before it
    /// settled the claim): settle it as refunded, never a second refund.
    Opened(IdempotencyKey),
    /// The policy proposed and the envelope judged.
    Judged { facts: OrderFacts, proposal: RefundProposal, judged: RefundJudged },
}

/// One claim judged by the refund chain: the claimant's risk tier (with
/// the change from the tier its identity was last judged at), then the
/// outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimJudgement {
    pub tier: RiskTier,
    pub change: Option<TierChange>,
    pub outcome: ClaimOutcome,
}

/// The refund chain, pure: the identity graph's facts about the claimant →
/// the risk tier → the order's facts → the refund policy's proposal → the
/// envelope's judgement. `last_tier` holds the tier each identity was last
/// judged at (updated here); `in_flight` is what open refund intents of
/// the order reserve; `opened` every refund key ever opened. The refund
/// job and the refund backtest both call it.
#[allow(clippy::too_many_arguments, reason = "each is one input of the chain")]
pub fn judge_claim(
    cfg: &RefundConfig,
    caps: &TierCaps,
    brand: &BrandId,
    profile: &Profile,
    last_tier: &mut BTreeMap<String, RiskTier>,
    claim: &ClaimRecord,
    order: &ShopOrder,
    in_flight: Money,
    opened: &BTreeSet<IdempotencyKey>,
    ignore_chargebacks: bool,
    now: Timestamp,
) -> ClaimJudgement {
    let (identity, mut facts) = profile.facts_of(&claim.customer);
    if ignore_chargebacks {
        facts.chargebacks_open = 0;
        facts.chargebacks_lost = 0;
    }
    let (tier, tier_facts) = tier_of(&facts, &cfg.tiers);
    let before = last_tier.get(&identity).copied().unwrap_or(RiskTier::Trusted);
    let change = (before != tier).then(|| TierChange {
        identity: identity.clone(),
        before,
        after: tier,
        facts: tier_facts.clone(),
    });
    last_tier.insert(identity.clone(), tier);
    let tier_facts = if tier_facts.is_empty() {
        vec![format!("identity {identity}: nothing against it")]
    } else {
        std::iter::once(format!("identity {identity}")).chain(tier_facts).collect()
    };
    let outcome = match OrderFacts::of(brand, &claim.store, &claim.id, order, in_flight, tier, tier_facts) {
        Err(why) => ClaimOutcome::Malformed(why),
        Ok(facts) if opened.contains(&refund_key(&facts)) => ClaimOutcome::Opened(refund_key(&facts)),
        Ok(facts) => {
            let case = RefundCase {
                claim: claim.claim,
                claimed: claim.claimed,
                tracking: claim.tracking,
                days_since_shipped: claim.days_since_shipped,
            };
            let proposal = propose(&case, &cfg.policy);
            let judged = judge_refund(&facts, &proposal, caps, opened, now);
            ClaimOutcome::Judged { facts, proposal, judged }
        }
    };
    ClaimJudgement { tier, change, outcome }
}
