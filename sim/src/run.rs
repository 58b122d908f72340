//! Running seeds: one turmoil simulation per seed, the fault plan applied
//! from outside the simulation between steps, MTTR measured per container
//! loss, and the checker's verdict at the end. Many seeds run on worker
//! threads; results come back in seed order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use dlft_core::config::Sabotage;
use dlft_core::ids::{Incarnation, JobId, WorkerId};
use dlft_core::probe::Site;
use dlft_core::store::{IntentPhase, JobState, SharedMemStore};
use dlft_core::telemetry::digest;
use dlft_core::time::{Millis, Timestamp};
use dlft_core::worker::{Ports, Worker};

use crate::checker::{CheckInput, Violation, check};
use crate::faults::{Direction, Fault, FaultPlan, Link};
use crate::hosts::{
    ADS_HOST, DB_HOST, PlatformState, ProbeState, SimAds, SimClock, SimProbe, SimStore, WebhookState, lock, serve_ads,
    serve_db, serve_webhooks, worker_host,
};
use crate::scenario::{Driver, Scenario};
use crate::world::{AdsWorld, page_name};

/// Virtual time starts at 2026-01-01T00:00:00Z, whatever the wall clock says.
pub const EPOCH: Timestamp = Timestamp(1_767_225_600_000);
/// How long a fault that cannot start yet (a recovery is under way) waits before it is tried again.
const POSTPONE: Millis = Millis(100);

/// ChaCha stream ids, one per component, so that adding draws to one
/// component does not shift another's.
pub mod stream {
    pub const WORLD: u64 = 1;
    pub const PLATFORM: u64 = 2;
    pub const FAULTS: u64 = 3;
    pub const WEBHOOKS: u64 = 4;
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
    /// Webhooks for pauses that took effect (true), lies (false
    /// confirmations and random claims), duplicates, and deliveries lost.
    pub webhooks_true: u64,
    pub webhook_lies: u64,
    pub webhook_duplicates: u64,
    pub webhooks_lost: u64,
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
        self.webhooks_true += o.webhooks_true;
        self.webhook_lies += o.webhook_lies;
        self.webhook_duplicates += o.webhook_duplicates;
        self.webhooks_lost += o.webhooks_lost;
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
    pub plan: FaultPlan,
    /// The event log, when asked for (`RunOptions::keep_events`).
    #[serde(skip)]
    pub log: Option<Vec<dlft_core::telemetry::Event>>,
}

/// What a finished run came to, counted the same way on every driver.
struct Tally {
    kills: u32,
    losers_killed: u32,
    model_cents: i64,
    model_cents_by_page: BTreeMap<String, i64>,
    breakers: Vec<(String, String)>,
    claims_by_worker: BTreeMap<String, u32>,
    webhook_commits: u32,
    rerolls: u32,
}

fn tally(world: &AdsWorld, snapshot: &dlft_core::store::Snapshot) -> Tally {
    let committed: Vec<_> = snapshot.intents.iter().filter(|i| i.phase == IntentPhase::Committed).collect();
    Tally {
        kills: committed.len() as u32,
        losers_killed: committed.iter().filter(|i| world.is_loser(&i.ad)).count() as u32,
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
        .map(|s| (s.name.clone(), s.reason.clone()))
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    Crash { worker: usize },
    Bounce { worker: usize },
    PartitionStart { worker: usize, link: Link, for_ms: u64, direction: Direction },
    Repair { worker: usize, link: Link, direction: Direction },
    StormStart { for_ms: u64 },
    StormEnd,
}

fn host_of(link: Link) -> &'static str {
    match link {
        Link::Db => DB_HOST,
        Link::Ads => ADS_HOST,
    }
}

/// One container-loss episode: from the crash until a live worker has
/// booted and re-claimed every job the dead one held.
#[derive(Debug)]
struct Episode {
    /// The worker that died (index into the run's workers).
    worker: usize,
    since_ms: u64,
    orphans: BTreeMap<JobId, u32>,
    incarnation_at_crash: Option<Incarnation>,
}

#[derive(Debug, Default)]
struct Mttr {
    open: Option<Episode>,
    samples: Vec<u64>,
}

impl Mttr {
    fn on_crash(&mut self, now_ms: u64, store: &SharedMemStore, index: usize, worker: &WorkerId) {
        let s = store.lock();
        let orphans = s
            .live_jobs()
            .filter(|j| j.state == JobState::Running && j.lease.as_ref().is_some_and(|l| &l.worker == worker))
            .map(|j| (j.id, j.attempt));
        match &mut self.open {
            Some(ep) => ep.orphans.extend(orphans),
            None => {
                self.open = Some(Episode {
                    worker: index,
                    since_ms: now_ms,
                    orphans: orphans.collect(),
                    incarnation_at_crash: s.current_incarnation(worker),
                })
            }
        }
    }

    /// Closes the episode if the system is whole again.
    fn poll(&mut self, now_ms: u64, up: &[bool], store: &SharedMemStore, ids: &[WorkerId]) {
        let Some(ep) = &self.open else { return };
        if !up[ep.worker] {
            return;
        }
        let worker = &ids[ep.worker];
        let s = store.lock();
        if s.current_incarnation(worker) <= ep.incarnation_at_crash {
            return;
        }
        let resumed = ep
            .orphans
            .iter()
            .all(|(id, attempt)| s.job(*id).is_none_or(|j| j.state.is_final() || j.attempt > *attempt));
        if resumed {
            self.samples.push(now_ms - ep.since_ms);
            self.open = None;
        }
    }
}

/// The fault plan a seed draws.
pub fn plan_for(scn: &Scenario, seed: u64) -> FaultPlan {
    FaultPlan::draw(scn, &mut rng_for(seed, stream::FAULTS))
}

/// Runs one seed of `scn` to the end, on the scenario's driver, and checks it.
pub fn run_seed(scn: &Scenario, seed: u64, opts: &RunOptions) -> Result<SeedReport, String> {
    let plan = plan_for(scn, seed);
    match scn.run.driver {
        Driver::Turmoil => run_seed_with_plan(scn, seed, opts, plan),
        Driver::Event => Ok(run_event_seed(scn, seed, opts, plan)),
    }
}

/// The event driver: the same loop and world in-process on virtual time.
fn run_event_seed(scn: &Scenario, seed: u64, opts: &RunOptions, plan: FaultPlan) -> SeedReport {
    let run = crate::inproc::run_in_process_with(scn, seed, opts.sabotage);
    let verdict = check(&CheckInput {
        seed,
        world: &run.world,
        store: &run.store,
        end: run.end,
        kill_deadline: Millis::from_secs(scn.assertions.kill_deadline_s),
        settled_until: run.end - Millis(3 * run.world.bucket().0),
        commit_within: scn.assertions.commit_within_s.map(Millis::from_secs),
    });
    let t = tally(&run.world, &run.store);
    SeedReport {
        seed,
        digest: digest(&run.store.events),
        mttr_ms: Vec::new(),
        leak_cents: verdict.leak_cents,
        violations: verdict.violations,
        kills: t.kills,
        losers_killed: t.losers_killed,
        winners_killed: t.kills - t.losers_killed,
        crashes: 0,
        faults: FaultCounts::default(),
        crash_sites: Vec::new(),
        events: run.store.events.len(),
        log: opts.keep_events.then(|| run.store.events.clone()),
        model_cents: t.model_cents,
        model_cents_by_page: t.model_cents_by_page,
        breakers: t.breakers,
        loop_crashes: 0,
        claims_by_worker: t.claims_by_worker,
        webhook_commits: t.webhook_commits,
        rerolls: t.rerolls,
        plan,
    }
}

/// Runs one seed with an explicit fault plan (a shrinker removes entries from it).
pub fn run_seed_with_plan(scn: &Scenario, seed: u64, opts: &RunOptions, plan: FaultPlan) -> Result<SeedReport, String> {
    let clock = SimClock { epoch: EPOCH };
    let end_ms = scn.run.duration_s * 1000;
    let net = scn.run.net_latency_ms;
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_millis(EPOCH.0))
        .tick_duration(Duration::from_millis(scn.run.tick_ms))
        .simulation_duration(Duration::from_millis(end_ms + 3_600_000))
        .min_message_latency(Duration::from_millis(net.lo))
        .max_message_latency(Duration::from_millis(net.hi))
        // One connection per call: the widest range puts the wrap-around of
        // ephemeral ports far beyond any connection a server still holds.
        .ephemeral_ports(1024..=65535)
        .build();

    let store = SharedMemStore::new();
    let world = Arc::new(Mutex::new(AdsWorld::new(scn, EPOCH, rng_for(seed, stream::WORLD))));
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
        webhooks: scn.webhooks.clone().map(|cfg| WebhookState::new(cfg, rng_for(seed, stream::WEBHOOKS))),
    }));
    let crash_loop =
        scn.scan.as_ref().and_then(|s| s.crash_loop_page).map(|p| (Site::ScanAfterSummary, page_name(p - 1)));
    let probe = Arc::new(Mutex::new(ProbeState {
        armed: plan.site_crashes.clone(),
        enabled: true,
        crash_loop,
        ..ProbeState::default()
    }));

    let db_store = store.clone();
    sim.host(DB_HOST, move || serve_db(db_store.clone(), clock));
    let workers = scn.run.workers as usize;
    let ads_platform = platform.clone();
    sim.host(ADS_HOST, move || serve_ads(ads_platform.clone(), clock, workers));
    let webhooks = scn.webhooks.is_some();
    let loop_cfg = scn.loop_config();
    let rpc_timeout = Duration::from_millis(scn.control.rpc_timeout_ms);
    let mut ids = Vec::new();
    for i in 0..workers {
        let worker_cfg = scn.worker_config_for(i, opts.sabotage);
        ids.push(worker_cfg.worker.clone());
        let loop_cfg = loop_cfg.clone();
        let boots = Arc::new(AtomicU64::new(0));
        let worker_probe = probe.clone();
        sim.host(worker_host(i), move || {
            let boot = boots.fetch_add(1, Ordering::SeqCst);
            let mut worker = Worker {
                ports: Ports {
                    store: SimStore { timeout: rpc_timeout },
                    ads: SimAds { timeout: rpc_timeout },
                    clock,
                    probe: SimProbe { state: worker_probe.clone(), worker: i },
                },
                cfg: worker_cfg.clone(),
                loop_cfg: loop_cfg.clone(),
                rng: rng_for(seed, stream::WORKER_BASE + 1_000 * i as u64 + boot),
                stop: Default::default(),
                pulse: Default::default(),
            };
            async move {
                if webhooks {
                    // The worker's webhook endpoint lives and dies with it.
                    let endpoint = serve_webhooks(SimStore { timeout: rpc_timeout }, clock);
                    tokio::spawn(async move {
                        let _ = endpoint.await;
                    });
                }
                worker.run(None).await.map_err(|e| e.to_string().into())
            }
        });
    }

    let mut queue: BTreeMap<(u64, u64), Action> = BTreeMap::new();
    let mut seq = 0u64;
    let mut push = |queue: &mut BTreeMap<(u64, u64), Action>, at: u64, a: Action| {
        seq += 1;
        queue.insert((at, seq), a);
    };
    for t in &plan.timed {
        let action = match &t.fault {
            Fault::Crash { worker } => Action::Crash { worker: *worker },
            Fault::Partition { worker, link, for_ms, direction } => {
                Action::PartitionStart { worker: *worker, link: *link, for_ms: *for_ms, direction: *direction }
            }
            Fault::TimeoutStorm { for_ms } => Action::StormStart { for_ms: *for_ms },
        };
        push(&mut queue, t.at_ms, action);
    }

    let fault_window_end = (scn.run.duration_s - scn.run.heal_s) * 1000;
    let mut mttr = Mttr::default();
    let mut up = vec![true; workers];
    let mut partitions = 0u32;
    let mut storms = 0u32;
    let mut crashes = 0u32;
    let mut faults = FaultCounts::default();
    let mut crash_sites = Vec::new();
    let mut now_ms = 0u64;
    let sim_error = loop {
        if now_ms >= end_ms {
            break None;
        }
        while let Some(entry) = queue.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let action = entry.remove();
            // A fault that would overlap a recovery or a partition waits, so
            // that each MTTR sample measures one container loss.
            let busy = mttr.open.is_some() || partitions > 0 || up.contains(&false);
            let postpone = matches!(action, Action::Crash { .. } | Action::PartitionStart { .. }) && busy;
            if postpone {
                if now_ms + POSTPONE.0 < fault_window_end {
                    push(&mut queue, now_ms + POSTPONE.0, action);
                }
                continue;
            }
            match action {
                Action::Crash { worker } => {
                    crash(&mut sim, now_ms, &mut mttr, &store, worker, &ids[worker]);
                    let delay = plan.restart_delays_ms[crashes as usize % plan.restart_delays_ms.len()];
                    crashes += 1;
                    up[worker] = false;
                    push(&mut queue, now_ms + delay, Action::Bounce { worker });
                }
                Action::Bounce { worker } => {
                    sim.bounce(worker_host(worker));
                    up[worker] = true;
                }
                Action::PartitionStart { worker, link, for_ms, direction } => {
                    let (w, peer) = (worker_host(worker), host_of(link));
                    match direction {
                        Direction::Both => sim.partition(w, peer),
                        Direction::Outbound => sim.partition_oneway(w, peer),
                        Direction::Inbound => sim.partition_oneway(peer, w),
                    }
                    partitions += 1;
                    match link {
                        Link::Db => faults.db_partitions += 1,
                        Link::Ads => faults.ads_partitions += 1,
                    }
                    push(&mut queue, now_ms + for_ms, Action::Repair { worker, link, direction });
                }
                Action::Repair { worker, link, direction } => {
                    let (w, peer) = (worker_host(worker), host_of(link));
                    match direction {
                        Direction::Both => sim.repair(w, peer),
                        Direction::Outbound => sim.repair_oneway(w, peer),
                        Direction::Inbound => sim.repair_oneway(peer, w),
                    }
                    partitions -= 1;
                }
                Action::StormStart { for_ms } => {
                    storms += 1;
                    faults.timeout_storms += 1;
                    lock(&platform).storm_timeout_pct = Some(scn.faults.storm_timeout_pct);
                    push(&mut queue, now_ms + for_ms, Action::StormEnd);
                }
                Action::StormEnd => {
                    storms -= 1;
                    if storms == 0 {
                        lock(&platform).storm_timeout_pct = None;
                    }
                }
            }
        }
        lock(&probe).enabled =
            !up.contains(&false) && partitions == 0 && mttr.open.is_none() && now_ms < fault_window_end;
        if let Err(e) = sim.step() {
            break Some(e.to_string());
        }
        now_ms = sim.elapsed().as_millis() as u64;
        let requested = lock(&probe).crash_requested.take();
        if let Some((site, worker)) = requested {
            crash(&mut sim, now_ms, &mut mttr, &store, worker, &ids[worker]);
            let delay = plan.restart_delays_ms[crashes as usize % plan.restart_delays_ms.len()];
            crashes += 1;
            crash_sites.push(site);
            up[worker] = false;
            push(&mut queue, now_ms + delay, Action::Bounce { worker });
        }
        mttr.poll(now_ms, &up, &store, &ids);
    };

    let snapshot = store.lock().snapshot();
    let world = lock(&world).clone();
    let end = EPOCH + Millis(end_ms);
    let bucket = world.bucket();
    let mut verdict = check(&CheckInput {
        seed,
        world: &world,
        store: &snapshot,
        end,
        kill_deadline: Millis::from_secs(scn.assertions.kill_deadline_s),
        settled_until: end - Millis(3 * bucket.0),
        commit_within: scn.assertions.commit_within_s.map(Millis::from_secs),
    });
    if let Some(ep) = mttr.open.take() {
        mttr.samples.push(end_ms - ep.since_ms);
        verdict.violations.push(Violation {
            seed,
            invariant: "recovery".into(),
            detail: format!("crash at {}ms: not recovered by the end ({:?} orphans)", ep.since_ms, ep.orphans),
        });
    }
    if let Some(e) = sim_error {
        verdict.violations.push(Violation { seed, invariant: "sim_error".into(), detail: e });
    }
    {
        let p = lock(&platform);
        faults.crashes = u64::from(crashes);
        faults.api_timeouts = p.hung;
        faults.rate_limits = p.rate_limited;
        faults.acks_without_effect = p.acked_without_effect;
        faults.partial_batches = p.partial_batches;
        if let Some(wh) = &p.webhooks {
            faults.webhooks_true = wh.sent;
            faults.webhook_lies = wh.lies;
            faults.webhook_duplicates = wh.duplicates;
            faults.webhooks_lost = wh.lost;
        }
    }
    let t = tally(&world, &snapshot);
    Ok(SeedReport {
        seed,
        digest: digest(&snapshot.events),
        mttr_ms: mttr.samples,
        leak_cents: verdict.leak_cents,
        violations: verdict.violations,
        kills: t.kills,
        losers_killed: t.losers_killed,
        winners_killed: t.kills - t.losers_killed,
        crashes,
        faults,
        crash_sites,
        events: snapshot.events.len(),
        log: opts.keep_events.then(|| snapshot.events.clone()),
        model_cents: t.model_cents,
        model_cents_by_page: t.model_cents_by_page,
        breakers: t.breakers,
        loop_crashes: lock(&probe).loop_crashes,
        claims_by_worker: t.claims_by_worker,
        webhook_commits: t.webhook_commits,
        rerolls: t.rerolls,
        plan,
    })
}

fn crash(sim: &mut turmoil::Sim<'_>, now_ms: u64, mttr: &mut Mttr, store: &SharedMemStore, i: usize, id: &WorkerId) {
    sim.crash(worker_host(i));
    mttr.on_crash(now_ms, store, i, id);
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
