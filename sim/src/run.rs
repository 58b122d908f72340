//! Running seeds on the scenario's driver: turmoil (simulated TCP, fixed
//! ticks, the plan applied between steps) or the event driver (`event.rs`:
//! in-process links, virtual time that jumps to the next timer). Both carry
//! out the same fault plan through `conductor.rs`, measure MTTR the same way
//! and end with the checker's verdict. Many seeds run on worker threads;
//! results come back in seed order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use dlft_core::act::intent::IntentPhase;
use dlft_core::config::Sabotage;
use dlft_core::jobs::Ports;
use dlft_core::probe::Site;
use dlft_core::store::SharedMemStore;
use dlft_core::time::Timestamp;
use dlft_core::worker::Worker;

use crate::checker::Violation;
use crate::conductor::{Conductor, Harness, Shared};
use crate::faults::{Direction, FaultPlan, Link};
use crate::hosts::{
    ADS_HOST, DB_HOST, PlatformState, ProbeState, SimAds, SimClock, SimProbe, SimStore, TurmoilWire, WebhookState,
    lock, serve_ads, serve_db, serve_webhooks, worker_host,
};
use crate::scenario::{Driver, Scenario};
use crate::world::{AdsWorld, page_name};

/// Virtual time starts at 2026-01-01T00:00:00Z, whatever the wall clock
/// says (a scenario may set another start: `Scenario::start`).
pub const EPOCH: Timestamp = Timestamp(1_767_225_600_000);

/// ChaCha stream ids, one per component, so that adding draws to one
/// component does not shift another's.
pub mod stream {
    pub const WORLD: u64 = 1;
    pub const PLATFORM: u64 = 2;
    pub const FAULTS: u64 = 3;
    pub const WEBHOOKS: u64 = 4;
    /// The event driver's message latencies (turmoil draws its own).
    pub const NET: u64 = 5;
    /// The bank's payment fates.
    pub const BANK: u64 = 6;
    /// The bank's replies (lost, rate-limited, 5xx).
    pub const BANK_FAULTS: u64 = 7;
    /// The brands' payables files.
    pub const PAYABLES: u64 = 8;
    /// The shop's orders and its refunds' fates.
    pub const SHOP: u64 = 9;
    /// The shop's customers, orders, claims and disputes.
    pub const SHOP_CLAIMS: u64 = 10;
    /// The shop's replies (lost, throttled, 5xx).
    pub const SHOP_FAULTS: u64 = 11;
    /// The support inbox's customers, orders and messages.
    pub const SUPPORT: u64 = 12;
    /// The inbox's replies (lost, rate limited, 5xx).
    pub const SUPPORT_FAULTS: u64 = 13;
    /// The parcels' fates (17TRACK).
    pub const PARCELS: u64 = 14;
    pub const WORKER_BASE: u64 = 100;
}

pub fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub sabotage: Sabotage,
    /// Keep each seed's event log in its report (`--events`).
    pub keep_events: bool,
}

/// How often each kind of fault actually happened (planned faults can be
/// postponed past the fault window and dropped): proof the bad paths ran.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FaultCounts {
    pub crashes: u64,
    pub db_partitions: u64,
    pub ads_partitions: u64,
    pub timeout_storms: u64,
    pub api_timeouts: u64,
    pub rate_limits: u64,
    pub acks_without_effect: u64,
    /// Batch pauses carried out only in part.
    pub partial_batches: u64,
    /// Status read-backs that showed an older state than the truth.
    pub stale_reads: u64,
    /// Webhooks for pauses that took effect (true), lies (false
    /// confirmations and random claims), duplicates, and deliveries lost.
    pub webhooks_true: u64,
    pub webhook_lies: u64,
    pub webhook_duplicates: u64,
    pub webhooks_lost: u64,
    /// Calls the platform refused because their brand's account was revoked.
    pub revoked_refusals: u64,
    /// The bank's misbehaviour: requests lost before it, payments made
    /// whose reply was lost, 429s, 5xx, and duplicate-request errors.
    pub bank_timeouts: u64,
    pub bank_lost_replies: u64,
    pub bank_rate_limits: u64,
    pub bank_server_errors: u64,
    pub bank_duplicate_requests: u64,
    /// Payments the bank reverted after they completed.
    pub bank_reversals: u64,
    /// The shop's misbehaviour: requests lost before it, refunds made
    /// whose reply was lost, THROTTLED answers, 5xx.
    pub shop_timeouts: u64,
    pub shop_lost_replies: u64,
    pub shop_throttled: u64,
    pub shop_server_errors: u64,
    /// The support inbox's misbehaviour: requests lost before it, replies
    /// sent whose answer was lost, 429s, 5xx; and model calls that failed
    /// at their vendor (overloaded, timed out, refused).
    pub inbox_timeouts: u64,
    pub inbox_lost_replies: u64,
    pub inbox_rate_limits: u64,
    pub inbox_server_errors: u64,
    pub model_failures: u64,
}

impl FaultCounts {
    pub fn add(&mut self, o: &FaultCounts) {
        self.crashes += o.crashes;
        self.db_partitions += o.db_partitions;
        self.ads_partitions += o.ads_partitions;
        self.timeout_storms += o.timeout_storms;
        self.api_timeouts += o.api_timeouts;
        self.rate_limits += o.rate_limits;
        self.acks_without_effect += o.acks_without_effect;
        self.partial_batches += o.partial_batches;
        self.stale_reads += o.stale_reads;
        self.webhooks_true += o.webhooks_true;
        self.webhook_lies += o.webhook_lies;
        self.webhook_duplicates += o.webhook_duplicates;
        self.webhooks_lost += o.webhooks_lost;
        self.revoked_refusals += o.revoked_refusals;
        self.bank_timeouts += o.bank_timeouts;
        self.bank_lost_replies += o.bank_lost_replies;
        self.bank_rate_limits += o.bank_rate_limits;
        self.bank_server_errors += o.bank_server_errors;
        self.bank_duplicate_requests += o.bank_duplicate_requests;
        self.bank_reversals += o.bank_reversals;
        self.shop_timeouts += o.shop_timeouts;
        self.shop_lost_replies += o.shop_lost_replies;
        self.shop_throttled += o.shop_throttled;
        self.shop_server_errors += o.shop_server_errors;
        self.inbox_timeouts += o.inbox_timeouts;
        self.inbox_lost_replies += o.inbox_lost_replies;
        self.inbox_rate_limits += o.inbox_rate_limits;
        self.inbox_server_errors += o.inbox_server_errors;
        self.model_failures += o.model_failures;
    }

    /// 1 for every kind of fault that happened at all, 0 for the rest:
    /// summed over seeds, how many seeds saw each kind.
    pub fn happened(&self) -> FaultCounts {
        let b = |n: u64| u64::from(n > 0);
        FaultCounts {
            crashes: b(self.crashes),
            db_partitions: b(self.db_partitions),
            ads_partitions: b(self.ads_partitions),
            timeout_storms: b(self.timeout_storms),
            api_timeouts: b(self.api_timeouts),
            rate_limits: b(self.rate_limits),
            acks_without_effect: b(self.acks_without_effect),
            partial_batches: b(self.partial_batches),
            stale_reads: b(self.stale_reads),
            webhooks_true: b(self.webhooks_true),
            webhook_lies: b(self.webhook_lies),
            webhook_duplicates: b(self.webhook_duplicates),
            webhooks_lost: b(self.webhooks_lost),
            revoked_refusals: b(self.revoked_refusals),
            bank_timeouts: b(self.bank_timeouts),
            bank_lost_replies: b(self.bank_lost_replies),
            bank_rate_limits: b(self.bank_rate_limits),
            bank_server_errors: b(self.bank_server_errors),
            bank_duplicate_requests: b(self.bank_duplicate_requests),
            bank_reversals: b(self.bank_reversals),
            shop_timeouts: b(self.shop_timeouts),
            shop_lost_replies: b(self.shop_lost_replies),
            shop_throttled: b(self.shop_throttled),
            shop_server_errors: b(self.shop_server_errors),
            inbox_timeouts: b(self.inbox_timeouts),
            inbox_lost_replies: b(self.inbox_lost_replies),
            inbox_rate_limits: b(self.inbox_rate_limits),
            inbox_server_errors: b(self.inbox_server_errors),
            model_failures: b(self.model_failures),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SeedReport {
    pub seed: u64,
    pub digest: String,
    pub mttr_ms: Vec<u64>,
    pub leak_cents: i64,
    pub violations: Vec<Violation>,
    pub kills: u32,
    pub losers_killed: u32,
    pub winners_killed: u32,
    pub crashes: u32,
    pub faults: FaultCounts,
    pub crash_sites: Vec<Site>,
    pub events: usize,
    /// What the model vendor billed (world truth), in all and by store page.
    pub model_cents: i64,
    pub model_cents_by_page: BTreeMap<String, i64>,
    /// Schedules the circuit breaker disabled, with the recorded reason.
    pub breakers: Vec<(String, String)>,
    /// Deaths by the scenario's deterministic crash loop.
    pub loop_crashes: u32,
    /// Claims each worker made (from the event log).
    pub claims_by_worker: BTreeMap<String, u32>,
    /// Kills committed by a webhook's reconcile job (after its read-back).
    pub webhook_commits: u32,
    /// Bandit re-rolls written (one allocation per slot).
    pub rerolls: u32,
    /// Committed kills per brand (a one-brand run: `default`).
    pub kills_by_brand: BTreeMap<String, u32>,
    /// Payouts committed (the bank shows them completed), abandoned
    /// (declined, or refused for good), and invoices refused by the
    /// envelope or the budgets.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub payouts: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub payouts_abandoned: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub payables_refused: u32,
    /// Payouts the bank reverted after they completed, booked as such.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub payouts_reversed: u32,
    /// Days of the brands' calendar (their budgets' time zone) in which a
    /// committed payout's reservation was made.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub payout_days: u32,
    /// Refunds committed (the shop shows them succeeded), abandoned (the
    /// gateway failed them, or refused for good), and claims the envelope
    /// or the budgets refused.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refunds: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refunds_abandoned: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub claims_refused: u32,
    /// Parcel statuses the brands' trackers reported (`[shop] tracker`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub parcels_tracked: u32,
    /// Orders the brands' shop mirrors hold at the end (`[shop] mirror`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub orders_mirrored: u32,
    /// Ring claims refunded in full before the profile put the ring's
    /// identities above trusted (how fast the ring was caught).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ring_refunds_before_caught: u32,
    /// Claims of honest customers refused (the cost of caution).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub honest_refused: u32,
    /// Support: messages that landed, replies committed, replies to
    /// messages that carried manipulation signals, and model calls per
    /// vendor (answered, failed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub messages: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replies: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replies_flagged: u32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_calls: BTreeMap<String, (u64, u64)>,
    /// Model calls the brands' model caps refused (not made).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub model_calls_refused: u32,
    /// Refunds of accepted support offers committed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offer_refunds: u32,
    /// Ad sets and campaigns the loop paused (escalations that took
    /// effect) and resumed, and those still paused at the end.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub escalations: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resumes: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub collateral_held: u32,
    pub plan: FaultPlan,
    /// The event log, when asked for (`RunOptions::keep_events`).
    #[serde(skip)]
    pub log: Option<Vec<dlft_core::telemetry::Event>>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a finished run came to, counted the same way on every driver.
pub(crate) struct Tally {
    pub(crate) kills: u32,
    pub(crate) losers_killed: u32,
    pub(crate) model_cents: i64,
    pub(crate) model_cents_by_page: BTreeMap<String, i64>,
    pub(crate) breakers: Vec<(String, String)>,
    pub(crate) claims_by_worker: BTreeMap<String, u32>,
    pub(crate) webhook_commits: u32,
    pub(crate) rerolls: u32,
    pub(crate) kills_by_brand: BTreeMap<String, u32>,
    pub(crate) payouts: u32,
    pub(crate) payouts_abandoned: u32,
    pub(crate) payables_refused: u32,
    pub(crate) payouts_reversed: u32,
    pub(crate) refunds: u32,
    pub(crate) refunds_abandoned: u32,
    pub(crate) claims_refused: u32,
    pub(crate) escalations: u32,
    pub(crate) resumes: u32,
    pub(crate) collateral_held: u32,
}

pub(crate) fn tally(world: &AdsWorld, snapshot: &dlft_core::store::Snapshot) -> Tally {
    let is_payout = |i: &&dlft_core::act::intent::Intent| i.action.kind() == "payout";
    let payouts =
        |phase: IntentPhase| snapshot.intents.iter().filter(|i| is_payout(i) && i.phase == phase).count() as u32;
    let committed: Vec<_> = snapshot
        .intents
        .iter()
        .filter(|i| i.phase == IntentPhase::Committed && i.action.killed_ad().is_some())
        .collect();
    let refunds = |phase: IntentPhase| {
        snapshot.intents.iter().filter(|i| i.action.kind() == "refund" && i.phase == phase).count() as u32
    };
    let node_effects = |paused: bool| world.node_effects().iter().filter(|e| e.paused == paused).count() as u32;
    Tally {
        escalations: node_effects(true),
        resumes: node_effects(false),
        collateral_held: world.paused_nodes().len() as u32,
        kills: committed.len() as u32,
        losers_killed: committed.iter().filter(|i| i.action.killed_ad().is_some_and(|ad| world.is_loser(ad))).count()
            as u32,
        model_cents: world.bills().iter().map(|b| b.cents).sum(),
        model_cents_by_page: by_page(world),
        breakers: breakers(snapshot),
        claims_by_worker: claims_by_worker(snapshot),
        webhook_commits: snapshot
            .events
            .iter()
            .filter(|e| e.after == "committed" && e.cause.starts_with("webhook reconcile"))
            .count() as u32,
        rerolls: snapshot.allocations.len() as u32,
        kills_by_brand: committed.iter().fold(BTreeMap::new(), |mut m, i| {
            *m.entry(i.brand.to_string()).or_insert(0) += 1;
            m
        }),
        payouts: payouts(IntentPhase::Committed),
        payouts_abandoned: payouts(IntentPhase::Abandoned),
        payables_refused: snapshot
            .events
            .iter()
            .filter(|e| e.kind == dlft_core::telemetry::EventKind::Verdict && e.entity.starts_with("payout"))
            .filter(|e| e.after.contains("deny"))
            .count() as u32,
        payouts_reversed: snapshot
            .events
            .iter()
            .filter(|e| e.kind == dlft_core::telemetry::EventKind::BudgetTransfer && e.after == "reversed")
            .count() as u32,
        refunds: refunds(IntentPhase::Committed),
        refunds_abandoned: refunds(IntentPhase::Abandoned),
        claims_refused: crate::checker::refund_refusals(snapshot).count() as u32,
    }
}

fn claims_by_worker(snapshot: &dlft_core::store::Snapshot) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for e in snapshot.events.iter().filter(|e| e.kind == dlft_core::telemetry::EventKind::JobClaimed) {
        let who = e.cause.strip_prefix("claim by ").and_then(|c| c.split(':').next()).unwrap_or("?");
        *out.entry(who.to_string()).or_insert(0) += 1;
    }
    out
}

fn by_page(world: &AdsWorld) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for b in world.bills() {
        *out.entry(b.page.clone()).or_insert(0) += b.cents;
    }
    out
}

fn breakers(snapshot: &dlft_core::store::Snapshot) -> Vec<(String, String)> {
    snapshot
        .schedules
        .iter()
        .filter(|s| !s.enabled && s.reason.starts_with("circuit breaker"))
        .map(|s| {
            let name = if s.brand.is_default() { s.name.clone() } else { format!("{}/{}", s.brand, s.name) };
            (name, s.reason.clone())
        })
        .collect()
}

/// The fault plan a seed draws.
pub fn plan_for(scn: &Scenario, seed: u64) -> FaultPlan {
    FaultPlan::draw(scn, &mut rng_for(seed, stream::FAULTS))
}

/// Runs one seed of `scn` to the end, on the scenario's driver, and checks it.
pub fn run_seed(scn: &Scenario, seed: u64, opts: &RunOptions) -> Result<SeedReport, String> {
    run_seed_with_plan(scn, seed, opts, plan_for(scn, seed))
}

/// Runs one seed with an explicit fault plan (a shrinker removes entries
/// from it), on the scenario's driver.
pub fn run_seed_with_plan(scn: &Scenario, seed: u64, opts: &RunOptions, plan: FaultPlan) -> Result<SeedReport, String> {
    match scn.run.driver {
        Driver::Turmoil => Ok(run_turmoil(scn, seed, opts, plan)),
        Driver::Event => Ok(crate::event::run_event(scn, seed, opts, plan)),
    }
}

/// The world, the platform and the probe of one seed, the same on every driver.
pub(crate) fn world_for(scn: &Scenario, seed: u64, plan: &FaultPlan) -> Shared {
    let start = scn.start();
    let world = Arc::new(Mutex::new(AdsWorld::new(scn, start, rng_for(seed, stream::WORLD))));
    let mut platform_cfg = scn.platform.clone();
    if let Some(r) = &plan.swarm {
        platform_cfg.timeout_pct = r.timeout_pct;
        platform_cfg.rate_limit_pct = r.rate_limit_pct;
        platform_cfg.ack_without_effect_pct = r.ack_without_effect_pct;
        platform_cfg.partial_batch_pct = r.partial_batch_pct;
    }
    let platform = Arc::new(Mutex::new(PlatformState {
        world: world.clone(),
        cfg: platform_cfg,
        rng: rng_for(seed, stream::PLATFORM),
        storm_timeout_pct: None,
        hung: 0,
        rate_limited: 0,
        acked_without_effect: 0,
        partial_batches: 0,
        stale_reads: 0,
        webhooks: scn.webhooks.clone().map(|cfg| WebhookState::new(cfg, rng_for(seed, stream::WEBHOOKS))),
        bank: crate::payouts::BankHost::new(scn, start, seed),
        shop: crate::refunds::ShopHost::new(scn, start, seed),
        support: crate::inbox::SupportHost::new(scn, start, seed),
    }));
    let crash_loop = scn
        .scan
        .as_ref()
        .and_then(|s| s.crash_loop_page)
        .map(|p| (Site::ScanAfterSummary, page_name(p - 1)))
        .or_else(|| scn.brands.as_ref().and_then(|b| b.crash_loop.clone()).map(|b| (Site::TickAfterPage, b)));
    let probe = Arc::new(Mutex::new(ProbeState {
        armed: plan.site_crashes.clone(),
        enabled: true,
        crash_loop,
        ..ProbeState::default()
    }));
    let ids = (0..scn.run.workers as usize).map(|i| scn.worker_config_for(i, Sabotage::None).worker).collect();
    let store = SharedMemStore::new();
    if let Some(budgets) = scn.budgets().expect("validated") {
        for brand in scn.brand_ids() {
            store.lock().set_budgets(&brand, &budgets, start);
        }
    }
    Shared { store, world, platform, probe, ids }
}

/// turmoil's hosts as the plan's harness.
struct TurmoilHarness<'a, 'b>(&'a mut turmoil::Sim<'b>);

fn host_of(link: Link) -> &'static str {
    match link {
        Link::Db => DB_HOST,
        Link::Ads => ADS_HOST,
    }
}

impl Harness for TurmoilHarness<'_, '_> {
    fn crash(&mut self, worker: usize) {
        self.0.crash(worker_host(worker));
    }
    fn restart(&mut self, worker: usize) {
        self.0.bounce(worker_host(worker));
    }
    fn cut(&mut self, worker: usize, link: Link, direction: Direction) {
        let (w, peer) = (worker_host(worker), host_of(link));
        match direction {
            Direction::Both => self.0.partition(w, peer),
            Direction::Outbound => self.0.partition_oneway(w, peer),
            Direction::Inbound => self.0.partition_oneway(peer, w),
        }
    }
    fn repair(&mut self, worker: usize, link: Link, direction: Direction) {
        let (w, peer) = (worker_host(worker), host_of(link));
        match direction {
            Direction::Both => self.0.repair(w, peer),
            Direction::Outbound => self.0.repair_oneway(w, peer),
            Direction::Inbound => self.0.repair_oneway(peer, w),
        }
    }
}

/// The turmoil driver: hosts over simulated TCP, stepped in fixed ticks,
/// the plan applied from outside between steps.
fn run_turmoil(scn: &Scenario, seed: u64, opts: &RunOptions, plan: FaultPlan) -> SeedReport {
    let clock = SimClock { epoch: scn.start() };
    let end_ms = scn.run.duration_s * 1000;
    let net = scn.run.net_latency_ms;
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_millis(scn.start().0))
        .tick_duration(Duration::from_millis(scn.run.tick_ms))
        .simulation_duration(Duration::from_millis(end_ms + 3_600_000))
        .min_message_latency(Duration::from_millis(net.lo))
        .max_message_latency(Duration::from_millis(net.hi))
        // One connection per call: the widest range puts the wrap-around of
        // ephemeral ports far beyond any connection a server still holds.
        .ephemeral_ports(1024..=65535)
        .build();

    let shared = world_for(scn, seed, &plan);
    let db_store = shared.store.clone();
    sim.host(DB_HOST, move || serve_db(db_store.clone(), clock));
    let workers = scn.run.workers as usize;
    let ads_platform = shared.platform.clone();
    sim.host(ADS_HOST, move || serve_ads(ads_platform.clone(), clock, workers));
    let webhooks = scn.webhooks.is_some();
    let loop_cfg = scn.loop_config();
    let wire = TurmoilWire { timeout: Duration::from_millis(scn.control.rpc_timeout_ms) };
    for i in 0..workers {
        let worker_cfg = scn.worker_config_for(i, opts.sabotage);
        let loop_cfg = loop_cfg.clone();
        let boots = Arc::new(AtomicU64::new(0));
        let worker_probe = shared.probe.clone();
        let wire = wire.clone();
        sim.host(worker_host(i), move || {
            let boot = boots.fetch_add(1, Ordering::SeqCst);
            let mut worker = Worker {
                ports: Ports {
                    store: SimStore { wire: wire.clone() },
                    ads: SimAds { wire: wire.clone(), account: None },
                    clock,
                    probe: SimProbe { state: worker_probe.clone(), worker: i },
                    bank: crate::payouts::SimBank::with_tracker(wire.clone(), Default::default(), scn.has_tracker())
                        .mirroring(scn.mirrored(&Default::default())),
                },
                cfg: worker_cfg.clone(),
                loop_cfg: loop_cfg.clone(),
                tenants: crate::hosts::tenants(scn, &wire),
                rng: rng_for(seed, stream::WORKER_BASE + 1_000 * i as u64 + boot),
                stop: Default::default(),
                pulse: Default::default(),
            };
            let endpoint_store = SimStore { wire: wire.clone() };
            async move {
                if webhooks {
                    // The worker's webhook endpoint lives and dies with it.
                    let endpoint = serve_webhooks(endpoint_store, clock);
                    tokio::spawn(async move {
                        let _ = endpoint.await;
                    });
                }
                worker.run(None).await.map_err(|e| e.to_string().into())
            }
        });
    }

    let mut c = Conductor::new(scn, &plan, shared);
    let mut now_ms = 0u64;
    let sim_error = loop {
        if now_ms >= end_ms {
            break None;
        }
        c.run_due(now_ms, &mut TurmoilHarness(&mut sim));
        c.arm_probes(now_ms);
        if let Err(e) = sim.step() {
            break Some(e.to_string());
        }
        now_ms = sim.elapsed().as_millis() as u64;
        c.after_step(now_ms, &mut TurmoilHarness(&mut sim));
    };
    c.report(scn, seed, opts, plan, sim_error)
}

/// Runs `seeds` on `threads` threads; `on_done` is called after each seed.
/// Results are in seed order.
pub fn run_many(
    scn: &Scenario,
    seeds: std::ops::Range<u64>,
    threads: usize,
    opts: &RunOptions,
    on_done: &(dyn Fn(&SeedReport) + Sync),
) -> Vec<Result<SeedReport, String>> {
    let n = (seeds.end - seeds.start) as usize;
    let next = AtomicU64::new(seeds.start);
    let results: Mutex<Vec<Option<Result<SeedReport, String>>>> = Mutex::new(vec![None; n]);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, n.max(1)) {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::SeqCst);
                    if seed >= seeds.end {
                        return;
                    }
                    let result = run_seed(scn, seed, opts);
                    if let Ok(report) = &result {
                        on_done(report);
                    }
                    lock(&results)[(seed - seeds.start) as usize] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .map(|r| r.expect("every seed ran"))
        .collect()
}
