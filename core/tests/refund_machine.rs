//! A refund through the write-ahead machine, on the MemStore, against a
//! scripted shop with Shopify's semantics: the envelope's ceiling is what
//! the intent reserves against the brand's refund cap when it opens, and
//! the intent ends committed with the amount the shop shows posted, or
//! abandoned with the reservation voided; never a second refund, whatever
//! the shop's replies (lost after the effect, a concurrent request under the
//! key, throttled, pending for a while, failed at the gateway).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Mutex;

use dlft_core::act::intent::{Action, Intent, IntentPhase};
use dlft_core::act::machine::Step;
use dlft_core::act::refund::{RefundEffect, marker, refund_intent};
use dlft_core::config::Sabotage;
use dlft_core::envelope::budget::{Cap, Purpose, TransferState, Window};
use dlft_core::envelope::refund::{OrderFacts, OriginalPayment, RefundJudged, TierCaps, judge_refund};
use dlft_core::estimate::risk::RiskTier;
use dlft_core::ids::BrandId;
use dlft_core::jobs::{Attempt, NoBank, Ports, drive};
use dlft_core::money::{Currency, Money};
use dlft_core::probe::NoProbe;
use dlft_core::propose::refund::RefundProposal;
use dlft_core::schedule::task::JobKind;
use dlft_core::sense::shop::{RefundRequest, RefundStatus, Shop, ShopError, ShopRefund};
use dlft_core::store::{SharedMemStore, Store, WriteBatch};
use dlft_core::time::{ManualClock, Millis};

mod common;
use common::{NOW, block_on};

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::EUR)
}

/// What the shop does, call by call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Script {
    /// Refunds, succeeds at once, replies.
    Clean,
    /// Refunds, but the reply is lost; the first read-back times out too.
    LostReply,
    /// Throttled once (nothing made), then refunds.
    Throttled,
    /// Refunds, but answers IDEMPOTENCY_CONCURRENT_REQUEST.
    Concurrent,
    /// Refunds (pending), pending for two reads, then succeeds.
    SlowSettle,
    /// Refunds, and the gateway fails it.
    GatewayFails,
}

struct ScriptedShop {
    script: Script,
    /// Refunds made, by idempotency key.
    refunds: Mutex<Vec<(String, ShopRefund)>>,
    calls: Mutex<u32>,
    reads: Mutex<u32>,
}

impl ScriptedShop {
    fn new(script: Script) -> ScriptedShop {
        ScriptedShop { script, refunds: Mutex::default(), calls: Mutex::default(), reads: Mutex::default() }
    }
}

impl Shop for ScriptedShop {
    fn refund(&self, req: &RefundRequest, key: &str) -> impl Future<Output = Result<ShopRefund, ShopError>> + Send {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            *calls
        };
        let mut refunds = self.refunds.lock().unwrap();
        let result = if self.script == Script::Throttled && n == 1 {
            Err(ShopError::Throttled { retry_after: Millis(500) })
        } else if let Some((_, r)) = refunds.iter().find(|(k, _)| k == key) {
            // @idempotent: a duplicate's answer is rebuilt from current state.
            Ok(r.clone())
        } else {
            let status = match self.script {
                Script::SlowSettle => RefundStatus::Pending,
                Script::GatewayFails => RefundStatus::Failure,
                _ => RefundStatus::Success,
            };
            let r = ShopRefund {
                id: format!("gid://shopify/Refund/{}", refunds.len() + 1),
                note: Some(req.note.clone()),
                amount: req.amount,
                status,
                created_at: NOW,
            };
            refunds.push((key.to_string(), r.clone()));
            match self.script {
                Script::LostReply => Err(ShopError::Timeout),
                Script::Concurrent => Err(ShopError::ConcurrentRequest),
                _ => Ok(r),
            }
        };
        std::future::ready(result)
    }

    fn order(&self, _: &str) -> impl Future<Output = Result<dlft_core::sense::shop::ShopOrder, ShopError>> + Send {
        std::future::ready(Err(ShopError::Rejected(vec!["not scripted".into()])))
    }

    fn order_refunds(&self, _order: &str) -> impl Future<Output = Result<Vec<ShopRefund>, ShopError>> + Send {
        let n = {
            let mut reads = self.reads.lock().unwrap();
            *reads += 1;
            *reads
        };
        let mut refunds = self.refunds.lock().unwrap();
        let result = if self.script == Script::LostReply && n == 1 {
            Err(ShopError::Timeout)
        } else {
            for (_, r) in refunds.iter_mut() {
                if self.script == Script::SlowSettle && n >= 3 {
                    r.status = RefundStatus::Success;
                }
            }
            Ok(refunds.iter().map(|(_, r)| r.clone()).collect())
        };
        std::future::ready(result)
    }
}

fn cfg() -> dlft_core::config::LoopConfig {
    common::loop_cfg()
}

fn facts() -> OrderFacts {
    OrderFacts {
        brand: BrandId::default(),
        store: "eu".into(),
        order_id: "gid://shopify/Order/1001".into(),
        claim_id: "thread-7".into(),
        max_refundable: eur(8_000),
        in_flight: eur(0),
        tier: RiskTier::Trusted,
        tier_facts: vec![],
        payment: OriginalPayment {
            transaction_id: "gid://shopify/OrderTransaction/55".into(),
            gateway: "shopify_payments".into(),
        },
    }
}

/// A store whose default brand has a daily refund cap of 100.00 EUR, and a
/// claimed job to write with.
fn setup() -> (SharedMemStore, dlft_core::store::Claim) {
    common::claimed_store(vec![Cap::brand(Purpose::Refund, Window::Daily, eur(10_000))])
}

struct Run {
    store: SharedMemStore,
    intent: Intent,
    errors: Vec<String>,
    shop: ScriptedShop,
}

/// Judges a proposal of `asked` on the order (refundable 80.00 EUR), opens
/// the approved refund, and drives it step by step as act jobs would until
/// it is final.
fn drive_refund(script: Script, asked: i64) -> Run {
    let (store, claim) = setup();
    let proposal = RefundProposal::Refund { amount: eur(asked), why: "wrong item".into() };
    let caps = TierCaps { currency: Currency::EUR, trusted: None, watch: 5_000, high: 1_500 };
    let RefundJudged::Approved(approved) = judge_refund(&facts(), &proposal, &caps, &BTreeSet::new(), NOW) else {
        panic!("the envelope refused");
    };
    let new = refund_intent(&approved, &facts(), &proposal);
    let key = new.key.clone();
    let Action::Refund { order } = new.action.clone() else { panic!("not a refund") };
    assert_eq!(order.parent_transaction_id, "gid://shopify/OrderTransaction/55", "to the original payment");
    let r = block_on(store.write(
        &claim.lease,
        WriteBatch { intents: vec![dlft_core::act::intent::IntentOp::Open(new)], ..Default::default() },
        NOW,
    ))
    .unwrap();
    assert!(r.refused.is_empty(), "{:?}", r.refused);
    let shop = ScriptedShop::new(script);
    let clock = ManualClock::new(NOW);
    let ports = Ports { store: &store, ads: (), clock: &clock, probe: NoProbe, bank: NoBank };
    let cfg = cfg();
    let mut attempt = Attempt::new(claim.lease.clone(), BrandId::default(), Currency::EUR);
    let mut errors = Vec::new();
    for _ in 0..20 {
        let intent = block_on(store.intent(&key)).unwrap().unwrap();
        let effect = RefundEffect::new(&key, &order);
        match block_on(drive::step(&ports, &shop, &cfg, Sabotage::None, &mut attempt, &intent, &effect)) {
            Ok(Step::Done) => break,
            Ok(_) => {}
            Err(e) => errors.push(e.to_string()),
        }
        clock.advance(Millis(1_000));
    }
    let intent = block_on(store.intent(&key)).unwrap().unwrap();
    Run { store, intent, errors, shop }
}

fn one_transfer(run: &Run) -> (TransferState, i64, i64, i64) {
    let t = block_on(run.store.transfers()).unwrap();
    assert_eq!(t.len(), 1);
    let a = block_on(run.store.accounts(None)).unwrap();
    (t[0].state, t[0].posted, a[0].pending, a[0].posted)
}

fn refunds_made(run: &Run) -> usize {
    run.shop.refunds.lock().unwrap().len()
}

#[test]
fn a_clean_refund_commits_and_posts_what_the_shop_shows() {
    let run = drive_refund(Script::Clean, 4_999);
    assert_eq!(run.intent.phase, IntentPhase::Committed, "{:?}", run.errors);
    assert_eq!(one_transfer(&run), (TransferState::Posted, 4_999, 0, 4_999));
    let refunds = run.shop.refunds.lock().unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].0, run.intent.key.as_str(), "made under the intent's key");
    assert_eq!(refunds[0].1.note.as_deref(), Some(marker(&run.intent.key).as_str()));
}

#[test]
fn the_envelope_ceiling_is_what_is_refunded() {
    // Asked 120.00 EUR; the order can refund 80.00: 80.00 is reserved and refunded.
    let run = drive_refund(Script::Clean, 12_000);
    assert_eq!(run.intent.phase, IntentPhase::Committed, "{:?}", run.errors);
    assert_eq!(one_transfer(&run), (TransferState::Posted, 8_000, 0, 8_000));
}

#[test]
fn a_reply_lost_after_the_effect_is_read_back_never_refunded_twice() {
    let run = drive_refund(Script::LostReply, 4_999);
    assert_eq!(run.intent.phase, IntentPhase::Committed, "{:?}", run.errors);
    assert_eq!(refunds_made(&run), 1, "one refund");
    assert_eq!(one_transfer(&run), (TransferState::Posted, 4_999, 0, 4_999));
    assert!(run.errors.iter().any(|e| e.contains("timeout")), "{:?}", run.errors);
}

#[test]
fn a_concurrent_request_under_the_key_is_read_back() {
    let run = drive_refund(Script::Concurrent, 4_999);
    assert_eq!(run.intent.phase, IntentPhase::Committed, "{:?}", run.errors);
    assert_eq!(refunds_made(&run), 1);
    assert_eq!(*run.shop.calls.lock().unwrap(), 1, "found by the read-back: no second call");
}

#[test]
fn throttling_waits_without_spending_an_attempt() {
    let run = drive_refund(Script::Throttled, 4_999);
    assert_eq!(run.intent.phase, IntentPhase::Committed, "{:?}", run.errors);
    assert_eq!(refunds_made(&run), 1);
    assert_eq!(run.intent.attempts, 1, "the throttled call was not counted");
    assert!(run.errors.iter().any(|e| e.contains("throttled")), "{:?}", run.errors);
}

#[test]
fn a_pending_refund_is_waited_for_not_made_again() {
    let run = drive_refund(Script::SlowSettle, 4_999);
    assert_eq!(run.intent.phase, IntentPhase::Committed, "{:?}", run.errors);
    assert_eq!(*run.shop.calls.lock().unwrap(), 1, "pending is on its way: never a second call");
    assert_eq!(one_transfer(&run).0, TransferState::Posted);
}

#[test]
fn a_failed_refund_is_abandoned_and_its_reservation_voided() {
    let run = drive_refund(Script::GatewayFails, 4_999);
    assert_eq!(run.intent.phase, IntentPhase::Abandoned, "{:?}", run.errors);
    assert_eq!(one_transfer(&run), (TransferState::Voided, 0, 0, 0), "the money is free again");
}

#[test]
fn a_brand_without_a_shop_refunds_nothing_and_its_act_job_is_the_act_pools() {
    // The act job drives a refund on the brand's money ports (`Ports::bank`);
    // a brand with none (NoBank) has its refund refused until the cap
    // abandons it and voids the reservation.
    let (store, claim) = setup();
    let proposal = RefundProposal::Refund { amount: eur(1_000), why: "damaged".into() };
    let caps = TierCaps { currency: Currency::EUR, trusted: None, watch: 5_000, high: 1_500 };
    let RefundJudged::Approved(approved) = judge_refund(&facts(), &proposal, &caps, &BTreeSet::new(), NOW) else {
        panic!("refused");
    };
    let new = refund_intent(&approved, &facts(), &proposal);
    let key = new.key.clone();
    block_on(store.write(
        &claim.lease,
        WriteBatch { intents: vec![dlft_core::act::intent::IntentOp::Open(new)], ..Default::default() },
        NOW,
    ))
    .unwrap();
    let clock = ManualClock::new(NOW);
    let ports = Ports { store: &store, ads: (), clock: &clock, probe: NoProbe, bank: NoBank };
    let cfg = cfg();
    let mut attempt = Attempt::new(claim.lease.clone(), BrandId::default(), Currency::EUR);
    let Action::Refund { order } = block_on(store.intent(&key)).unwrap().unwrap().action else { panic!() };
    for _ in 0..10 {
        let intent = block_on(store.intent(&key)).unwrap().unwrap();
        let effect = RefundEffect::new(&key, &order);
        let _ = block_on(drive::step(&ports, &ports.bank, &cfg, Sabotage::None, &mut attempt, &intent, &effect));
        clock.advance(Millis(1_000));
    }
    let intent = block_on(store.intent(&key)).unwrap().unwrap();
    assert_eq!(intent.phase, IntentPhase::Abandoned);
    assert_eq!(block_on(store.transfers()).unwrap()[0].state, TransferState::Voided);
    let job = drive::job_of(&intent, NOW);
    assert_eq!(job.kind, JobKind::Refund.as_str(), "driven by the act pool's refund job");
    assert!(JobKind::KillAd.pool_kinds().contains(&JobKind::Refund));
}
