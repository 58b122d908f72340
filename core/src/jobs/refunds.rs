//! The refund job: sensor (the brand's claims desk, the shop's orders and
//! disputes, the tracker's parcels) → estimator (the cross-store identity
//! graph and its risk tier) → policy (what the claim should get) →
//! envelope (the ceiling, the original payment, one refund per claim, the
//! budgets) → refund intents, and the act jobs that drive them.
//!
//! One run per slot of the brand's `refunds` schedule. The shop mirror
//! reads its stores' changed orders first (`jobs::mirror`: a few pages a
//! run, checkpointed; a shop that fails only stops the mirror). The orders
//! of the claims it judges are read next, then their parcels from the brand's
//! tracker (`sense::shipments`, registered and read in one go): where the
//! tracker knows, a claim is judged against the carrier's word rather than
//! the desk's, its settlement keeps what the tracker said, and parcels
//! delivered or expired are stopped. The identity graph
//! is rebuilt from every claim the desk holds, every dispute and every
//! mirrored order, as they stand now; an identity judged at another tier than its last settled
//! claim recorded gets one event row naming the facts (`TierChanged`).
//! Each open claim is judged once: an approved refund opens its
//! intent (reserving its amount against the brand's refund caps in the
//! same write) and the claim settles as refunded; a refusal is one verdict
//! row with its facts, and the claim settles with its reason. A claim the
//! budgets cannot hold right now is left open for the next run, said
//! nothing of. A crash between the write and the settle only makes the
//! claim read again; its key is already opened, so it settles as refunded
//! without a second refund. A shop that throttles or fails stops the run
//! short (the claims not reached wait for the next run).

use std::collections::{BTreeMap, BTreeSet};

use crate::act::intent::{Action, IntentOp};
use crate::act::refund::{in_flight_on, refund_intent};
use crate::config::{RefundConfig, Sabotage};
use crate::decide::{ClaimOutcome, judge_claim};
use crate::envelope::refund::{RefundJudged, TierCaps, refund_key};
use crate::envelope::{Decision, DenyReason, Verdict};
use crate::estimate::identity::{Profile, SharedValues};
use crate::estimate::risk::{RiskTier, TierChange};
use crate::ids::{AdId, IdempotencyKey};
use crate::money::Money;
use crate::probe::{Probe, Site};
use crate::sense::claims::{ClaimRecord, ClaimsSource, Settlement, Tracking};
use crate::sense::shipments::{Shipments, Track17Error, TrackStatus, is_final, order_tracking};
use crate::sense::shop::{Shop, ShopError, ShopOrder};
use crate::store::{IntentFilter, Store};
use crate::time::{Clock, Millis};

use super::payables::Room;
use super::{Attempt, JobError, Ports, drive};

/// The schedule that fires the refund job of each brand with refunds.
pub const REFUNDS_SCHEDULE: &str = "refunds";

/// Open claims judged per run at most (the rest wait for the next run).
pub const MAX_CLAIMS_PER_RUN: usize = 64;

pub async fn run<S: Store, A, C: Clock, P: Probe, B: Shop + ClaimsSource + Shipments>(
    ports: &Ports<S, A, C, P, B>,
    cfg: &RefundConfig,
    sabotage: Sabotage,
    attempt: &mut Attempt,
) -> Result<(), JobError> {
    let brand = attempt.brand.clone();
    let open = ports.store.brand_intents(&brand, &IntentFilter::open()).await?;
    drive::redrive(ports, attempt, open.iter().filter(|i| matches!(i.action, Action::Refund { .. }))).await?;
    let secret = cfg.identity_key.as_bytes();
    let mirrors = !ports.bank.stores().is_empty();
    // Stores not read through once yet: no identity is trusted while the
    // graph may miss their orders.
    let not_read = if mirrors { super::mirror::mirror(ports, attempt, secret, sabotage).await?.unread } else { vec![] };
    let unread = |e: crate::sense::claims::SourceError| JobError::RetryAfter { wait: Millis(0), why: e.to_string() };
    let mut claims = ports.bank.claims().await.map_err(unread)?;
    let disputes = ports.bank.disputes().await.map_err(unread)?;
    let judged: Vec<usize> =
        (0..claims.len()).filter(|&i| claims[i].settled.is_none()).take(MAX_CLAIMS_PER_RUN).collect();
    // What the run judges against: the open intents (in flight on an order)
    // and those of the claims it judges (opened by a run that died before
    // it settled them), not every refund the brand ever made.
    let keyed = IntentFilter::kinds(&[]).and_keys(judged.iter().map(|&i| claim_key(&brand, &claims[i])));
    let mut intents = open;
    for i in ports.store.brand_intents(&brand, &keyed).await? {
        if !intents.iter().any(|o| o.key == i.key) {
            intents.push(i);
        }
    }
    // The judged claims' orders. A shop that fails stops the reading: the
    // claims read are judged, the rest wait for the next run.
    let mut orders: Vec<(usize, Result<ShopOrder, Vec<String>>)> = Vec::new();
    let mut stopped: Option<ShopError> = None;
    for &i in &judged {
        let now = ports.clock.now();
        let order = ports.bank.order(&claims[i].order_id).await;
        attempt.record(now, "shopify", "order", order.is_ok());
        match order {
            Ok(o) => orders.push((i, Ok(o))),
            Err(ShopError::Rejected(why)) => orders.push((i, Err(why))),
            Err(e) => {
                stopped = Some(e);
                break;
            }
        }
    }
    // Their parcels, as the brand's tracker reports them: what a claim is
    // judged against, and what the identity graph counts, wherever the
    // tracker knows (the desk's word stands where it does not).
    let read = orders.iter().filter_map(|(_, o)| o.as_ref().ok());
    let parcels =
        if sabotage == Sabotage::IgnoreTracker { BTreeMap::new() } else { track(ports, attempt, read).await? };
    let mut tracked: BTreeMap<usize, Tracking> = BTreeMap::new();
    for (i, order) in &orders {
        let Ok(order) = order else { continue };
        let seen = order_tracking(order.tracking_numbers.iter().filter_map(|n| parcels.get(n)));
        if seen != Tracking::Unknown {
            tracked.insert(*i, seen);
            claims[*i].tracking = seen;
        }
    }
    let now = ports.clock.now();
    // The identity graph, when there is a claim to judge: every claim, dispute
    // and mirrored order of the brand (a run with nothing to judge reads none);
    // and the tier each identity was last judged at, from the desk's settled
    // claims (oldest first): a judgement at another tier is a change.
    let (profile, mut last_tier) = if orders.is_empty() {
        (Profile::new(secret), BTreeMap::new())
    } else {
        let mirrored = if mirrors { super::mirror::orders(&ports.store, &brand).await? } else { Vec::new() };
        let shared = if sabotage == Sabotage::IgnoreSharedValues { &SharedValues::default() } else { &cfg.shared };
        let unread = u32::try_from(not_read.len()).unwrap_or(u32::MAX);
        let profile = Profile::new(secret).without(shared).unread(unread).with(&claims, &disputes, &mirrored, now);
        let mut last_tier: BTreeMap<String, RiskTier> = BTreeMap::new();
        for c in &claims {
            let tier = match &c.settled {
                Some(Settlement::Refunded { tier, .. } | Settlement::NoRefund { tier, .. }) => RiskTier::parse(tier),
                None => None,
            };
            if let Some(tier) = tier {
                last_tier.insert(profile.label_of(&c.customer), tier);
            }
        }
        (profile, last_tier)
    };
    let budgets = ports.store.budgets().await?.into_iter().find(|(b, _)| b == &brand).map(|(_, b)| b);
    let accounts = ports.store.accounts(Some(&brand)).await?.into_iter().map(|a| (a.key.clone(), a)).collect();
    let mut room = Room { budgets: budgets.unwrap_or_default(), accounts };
    let mut opened: BTreeSet<IdempotencyKey> = intents.iter().map(|i| i.key.clone()).collect();
    let caps = if sabotage == Sabotage::SkipTierCap {
        TierCaps { trusted: None, watch: i64::MAX, high: i64::MAX, ..cfg.caps.clone() }
    } else {
        cfg.caps.clone()
    };
    for (i, order) in &orders {
        let (claim, tracked) = (&claims[*i], tracked.get(i).copied());
        let now = ports.clock.now();
        let order = match order {
            Ok(o) => o,
            Err(why) => {
                let why = format!("order {} cannot be read: {}", claim.order_id, why.join("; "));
                let key = claim_key(&brand, claim);
                refuse(ports, attempt, claim, &key, DenyReason::Malformed, why, None, String::new(), None).await?;
                continue;
            }
        };
        let in_flight = in_flight_on(&claim.order_id, order.max_refundable.currency, &intents);
        let judgement = judge_claim(
            cfg,
            &caps,
            &brand,
            &profile,
            &mut last_tier,
            claim,
            order,
            in_flight,
            &opened,
            sabotage == Sabotage::IgnoreChargebacks,
            now,
        );
        let (change, tier_name) = (judgement.change, judgement.tier.as_str().to_string());
        let (facts, proposal, judged) = match judgement.outcome {
            ClaimOutcome::Malformed(why) => {
                let key = claim_key(&brand, claim);
                refuse(ports, attempt, claim, &key, DenyReason::Malformed, why, change, tier_name, tracked).await?;
                continue;
            }
            ClaimOutcome::Opened(key) => {
                // Opened by a run that died before it settled the claim.
                let amount = claim_amount(&intents, &key).unwrap_or(Money::zero(claim.claimed.currency));
                let how = Settlement::Refunded { key: key.to_string(), amount, tier: tier_name, tracked };
                settle(ports, claim, &how).await?;
                continue;
            }
            ClaimOutcome::Judged { facts, proposal, judged } => (facts, proposal, judged),
        };
        let key = refund_key(&facts);
        match judged {
            RefundJudged::Refused(v) => {
                let why = v.reason.clone();
                let mut batch = attempt.batch();
                batch.verdicts.push(v);
                batch.tier_changes.extend(change);
                ports.store.write(&attempt.lease, batch, now).await?;
                settle(ports, claim, &Settlement::NoRefund { why, tier: tier_name, tracked }).await?;
            }
            RefundJudged::Approved(approved) => {
                let mut new = refund_intent(&approved, &facts, &proposal);
                let reserve = new.reserve.clone().expect("a refund reserves");
                match room.take(&brand, &new.key, &reserve, now) {
                    Ok(true) => {}
                    // Not now: the claim waits for room (a new day or month).
                    Ok(false) => continue,
                    Err(why) => {
                        let why = format!("claim {}: {why}", claim.id);
                        refuse(ports, attempt, claim, &key, DenyReason::OverBudget, why, change, tier_name, tracked)
                            .await?;
                        continue;
                    }
                }
                if sabotage == Sabotage::SkipReservation {
                    new.reserve = None;
                }
                let mut batch = attempt.batch();
                batch.verdicts.push(approved.verdict.clone());
                batch.intents.push(IntentOp::Open(new));
                batch.tier_changes.extend(change);
                let result = ports.store.write(&attempt.lease, batch, now).await?;
                if result.refused.iter().any(|(k, _)| k == &key) {
                    // Another writer took the room first: the claim waits.
                    continue;
                }
                opened.insert(key.clone());
                intents.extend(result.intents.iter().filter(|i| i.key == key).cloned());
                ports.probe.reached(Site::RefundsAfterOpen, "refunds").await;
                let jobs = drive::jobs_of_open(result.intents.iter().filter(|i| i.key == key), now);
                if !jobs.is_empty() {
                    let mut batch = attempt.batch();
                    batch.enqueue = jobs;
                    ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
                }
                let how =
                    Settlement::Refunded { key: key.to_string(), amount: approved.amount, tier: tier_name, tracked };
                settle(ports, claim, &how).await?;
            }
        }
    }
    // Parcels whose stories have ended need no more tracking (a failure
    // only leaves them tracked: the next run stops them).
    let ended: Vec<String> = parcels.iter().filter(|(_, s)| is_final(**s)).map(|(n, _)| n.clone()).collect();
    if !ended.is_empty() {
        let now = ports.clock.now();
        let stop = ports.bank.stop(&ended).await;
        attempt.record(now, "17track", "stoptrack", stop.is_ok());
    }
    // The calls' cost rows not yet written with a verdict.
    let batch = attempt.batch();
    if !batch.costs.is_empty() {
        ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
    }
    match stopped {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// The latest status of the parcels of `orders`, from the brand's tracker
/// (nothing without one). Numbers the tracker refused stay unknown; a
/// tracker that cannot answer stops the run before anything is judged: a
/// claim is not judged on the desk's word when the carrier's is to be had.
async fn track<'a, S, A, C: Clock, P, B: Shipments>(
    ports: &Ports<S, A, C, P, B>,
    attempt: &mut Attempt,
    orders: impl Iterator<Item = &'a ShopOrder>,
) -> Result<BTreeMap<String, TrackStatus>, JobError> {
    let numbers: BTreeSet<String> = orders.flat_map(|o| o.tracking_numbers.iter().cloned()).collect();
    if !ports.bank.tracks() || numbers.is_empty() {
        return Ok(BTreeMap::new());
    }
    let numbers: Vec<String> = numbers.into_iter().collect();
    let now = ports.clock.now();
    let read = ports.bank.track(&numbers).await;
    attempt.record(now, "17track", "track", read.is_ok());
    match read {
        Ok((shipments, _refused)) => Ok(shipments.into_iter().map(|s| (s.number, s.status)).collect()),
        Err(e @ (Track17Error::RateLimited(_) | Track17Error::Unavailable(_) | Track17Error::Malformed(_))) => {
            Err(JobError::RetryAfter { wait: Millis(1_000), why: e.to_string() })
        }
        Err(e @ (Track17Error::Auth(_) | Track17Error::Refused { .. })) => Err(JobError::Permanent(e.to_string())),
    }
}

/// The key a claim's refusal is logged under when there are no order facts
/// to build the refund key from.
fn claim_key(brand: &crate::ids::BrandId, claim: &ClaimRecord) -> IdempotencyKey {
    IdempotencyKey::new(format!("refund/{brand}/{}/{}/{}", claim.store, claim.order_id, claim.id))
}

/// What the refund intent `key` reserves (zero if it is not among `intents`).
fn claim_amount(intents: &[crate::act::intent::Intent], key: &IdempotencyKey) -> Option<Money> {
    intents.iter().find(|i| &i.key == key).and_then(|i| match &i.action {
        Action::Refund { order } => Some(order.amount),
        _ => None,
    })
}

/// A refusal: one verdict row with its reason (and the tier change it
/// found), and the claim settled with it.
#[allow(clippy::too_many_arguments, reason = "each is one named fact of the refusal")]
async fn refuse<S: Store, A, C: Clock, P: Probe, B: ClaimsSource>(
    ports: &Ports<S, A, C, P, B>,
    attempt: &mut Attempt,
    claim: &ClaimRecord,
    key: &IdempotencyKey,
    reason: DenyReason,
    why: String,
    change: Option<TierChange>,
    tier: String,
    tracked: Option<Tracking>,
) -> Result<(), JobError> {
    let now = ports.clock.now();
    let verdict = Verdict {
        ad: AdId::new(claim.order_id.clone()),
        key: key.clone(),
        decision: Decision::Deny(reason),
        at: now,
        reason: why.clone(),
    };
    let mut batch = attempt.batch();
    batch.verdicts.push(verdict);
    batch.tier_changes.extend(change);
    ports.store.write(&attempt.lease, batch, now).await?;
    settle(ports, claim, &Settlement::NoRefund { why, tier, tracked }).await
}

async fn settle<S, A, C, P: Probe, B: ClaimsSource>(
    ports: &Ports<S, A, C, P, B>,
    claim: &ClaimRecord,
    how: &Settlement,
) -> Result<(), JobError> {
    ports.probe.reached(Site::RefundsBeforeSettle, "refunds").await;
    ports
        .bank
        .settle_claim(&claim.id, how)
        .await
        .map_err(|e| JobError::RetryAfter { wait: Millis(0), why: e.to_string() })
}
