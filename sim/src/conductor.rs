//! The fault plan carried out, the same way on every driver: a queue of
//! timed actions (crash, restart, partition, repair, timeout storm), the
//! postponement that keeps each MTTR sample about one container loss, the
//! probe sites armed only while nothing else is going on, MTTR measured per
//! container loss, and the seed's report. A driver supplies a [`Harness`]
//! that does the physical part (abort a task, crash a turmoil host, cut a
//! link) and calls the conductor as its time moves.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use dlft_core::ids::{Incarnation, JobId, WorkerId};
use dlft_core::probe::Site;
use dlft_core::store::{JobState, SharedMemStore};
use dlft_core::telemetry::digest;
use dlft_core::time::Millis;

use crate::checker::{CheckInput, Violation, check};
use crate::faults::{Direction, Fault, FaultPlan, Link};
use crate::hosts::{PlatformState, ProbeState, lock};
use crate::run::{FaultCounts, RunOptions, SeedReport, tally};
use crate::scenario::Scenario;
use crate::world::AdsWorld;

/// How long a fault that cannot start yet (a recovery is under way) waits before it is tried again.
const POSTPONE: Millis = Millis(100);

/// What a driver does physically when the plan says so.
pub trait Harness {
    /// The container of `worker` is lost: its tasks stop where they are and its memory is gone.
    fn crash(&mut self, worker: usize);
    /// A lost container comes back (a new boot of the same worker id).
    fn restart(&mut self, worker: usize);
    fn cut(&mut self, worker: usize, link: Link, direction: Direction);
    fn repair(&mut self, worker: usize, link: Link, direction: Direction);
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    Crash { worker: usize },
    Restart { worker: usize },
    PartitionStart { worker: usize, link: Link, for_ms: u64, direction: Direction },
    Repair { worker: usize, link: Link, direction: Direction },
    StormStart { for_ms: u64 },
    StormEnd,
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

/// The shared state of one seed's run that the conductor reads and writes.
pub struct Shared {
    pub store: SharedMemStore,
    pub world: Arc<Mutex<AdsWorld>>,
    pub platform: Arc<Mutex<PlatformState>>,
    pub probe: Arc<Mutex<ProbeState>>,
    /// The workers' ids, in order.
    pub ids: Vec<WorkerId>,
}

pub struct Conductor {
    queue: BTreeMap<(u64, u64), Action>,
    seq: u64,
    mttr: Mttr,
    up: Vec<bool>,
    partitions: u32,
    storms: u32,
    crashes: u32,
    faults: FaultCounts,
    crash_sites: Vec<Site>,
    fault_window_end: u64,
    storm_timeout_pct: u32,
    restart_delays_ms: Vec<u64>,
    pub shared: Shared,
}

impl Conductor {
    pub fn new(scn: &Scenario, plan: &FaultPlan, shared: Shared) -> Conductor {
        let mut c = Conductor {
            queue: BTreeMap::new(),
            seq: 0,
            mttr: Mttr::default(),
            up: vec![true; shared.ids.len()],
            partitions: 0,
            storms: 0,
            crashes: 0,
            faults: FaultCounts::default(),
            crash_sites: Vec::new(),
            fault_window_end: (scn.run.duration_s - scn.run.heal_s) * 1000,
            storm_timeout_pct: scn.faults.storm_timeout_pct,
            restart_delays_ms: plan.restart_delays_ms.clone(),
            shared,
        };
        for t in &plan.timed {
            let action = match &t.fault {
                Fault::Crash { worker } => Action::Crash { worker: *worker },
                Fault::Partition { worker, link, for_ms, direction } => {
                    Action::PartitionStart { worker: *worker, link: *link, for_ms: *for_ms, direction: *direction }
                }
                Fault::TimeoutStorm { for_ms } => Action::StormStart { for_ms: *for_ms },
            };
            c.push(t.at_ms, action);
        }
        c
    }

    fn push(&mut self, at_ms: u64, action: Action) {
        self.seq += 1;
        self.queue.insert((at_ms, self.seq), action);
    }

    /// When the next planned action is due, if any.
    pub fn next_at(&self) -> Option<u64> {
        self.queue.first_key_value().map(|(k, _)| k.0)
    }

    /// When the faults stop (the heal phase begins).
    pub fn fault_window_end(&self) -> u64 {
        self.fault_window_end
    }

    /// A container loss is being recovered from (MTTR is measured).
    pub fn recovering(&self) -> bool {
        self.mttr.open.is_some()
    }

    /// Carries out every action due at `now_ms`.
    pub fn run_due(&mut self, now_ms: u64, h: &mut impl Harness) {
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let action = entry.remove();
            // A fault that would overlap a recovery or a partition waits, so
            // that each MTTR sample measures one container loss.
            let busy = self.mttr.open.is_some() || self.partitions > 0 || self.up.contains(&false);
            let postpone = matches!(action, Action::Crash { .. } | Action::PartitionStart { .. }) && busy;
            if postpone {
                if now_ms + POSTPONE.0 < self.fault_window_end {
                    self.push(now_ms + POSTPONE.0, action);
                }
                continue;
            }
            match action {
                Action::Crash { worker } => self.crash(now_ms, worker, h),
                Action::Restart { worker } => {
                    h.restart(worker);
                    self.up[worker] = true;
                }
                Action::PartitionStart { worker, link, for_ms, direction } => {
                    h.cut(worker, link, direction);
                    self.partitions += 1;
                    match link {
                        Link::Db => self.faults.db_partitions += 1,
                        Link::Ads => self.faults.ads_partitions += 1,
                    }
                    self.push(now_ms + for_ms, Action::Repair { worker, link, direction });
                }
                Action::Repair { worker, link, direction } => {
                    h.repair(worker, link, direction);
                    self.partitions -= 1;
                }
                Action::StormStart { for_ms } => {
                    self.storms += 1;
                    self.faults.timeout_storms += 1;
                    lock(&self.shared.platform).storm_timeout_pct = Some(self.storm_timeout_pct);
                    self.push(now_ms + for_ms, Action::StormEnd);
                }
                Action::StormEnd => {
                    self.storms -= 1;
                    if self.storms == 0 {
                        lock(&self.shared.platform).storm_timeout_pct = None;
                    }
                }
            }
        }
    }

    fn crash(&mut self, now_ms: u64, worker: usize, h: &mut impl Harness) {
        h.crash(worker);
        self.mttr.on_crash(now_ms, &self.shared.store, worker, &self.shared.ids[worker]);
        let delay = self.restart_delays_ms[self.crashes as usize % self.restart_delays_ms.len()];
        self.crashes += 1;
        self.up[worker] = false;
        self.push(now_ms + delay, Action::Restart { worker });
    }

    /// Probe sites fire only while every worker is up, no partition is on,
    /// no recovery is under way and the fault phase lasts.
    pub fn arm_probes(&self, now_ms: u64) {
        lock(&self.shared.probe).enabled = !self.up.contains(&false)
            && self.partitions == 0
            && self.mttr.open.is_none()
            && now_ms < self.fault_window_end;
    }

    /// Crashes the worker a probe site asked to die, if any; then checks
    /// whether an open recovery has closed.
    pub fn after_step(&mut self, now_ms: u64, h: &mut impl Harness) {
        let requested = lock(&self.shared.probe).crash_requested.take();
        if let Some((site, worker)) = requested {
            self.crash(now_ms, worker, h);
            self.crash_sites.push(site);
        }
        self.mttr.poll(now_ms, &self.up, &self.shared.store, &self.shared.ids);
    }

    /// The seed's report: the checker's verdict against world truth, an
    /// unclosed recovery, the driver's own error, and what happened.
    pub fn report(
        mut self,
        scn: &Scenario,
        seed: u64,
        opts: &RunOptions,
        plan: FaultPlan,
        sim_error: Option<String>,
    ) -> SeedReport {
        let snapshot = std::mem::take(&mut *self.shared.store.lock()).into_snapshot();
        let world = lock(&self.shared.world).clone();
        let end_ms = scn.run.duration_s * 1000;
        let end = scn.start() + Millis(end_ms);
        let bank = lock(&self.shared.platform).bank.as_ref().map(|h| crate::checker::BankTruth {
            movements: h.bank.movements(end),
            payments: h.bank.payments().map(|(p, at, declined)| (p.clone(), at, declined)).collect(),
            fraudulent: h.fraudulent().into_iter().map(str::to_string).collect(),
            allow: h.allow.iter().map(|c| (c.id.clone(), c.account_id.clone())).collect(),
            budgets: scn.budgets().expect("validated"),
            accounts: scn.brand_ids().into_iter().map(|b| (crate::payouts::from_account(&b), b)).collect(),
        });
        let shop = lock(&self.shared.platform).shop.as_ref().map(|h| crate::checker::ShopTruth {
            budgets: scn.budgets().expect("validated"),
            ..crate::checker::ShopTruth::of(h, end)
        });
        let support = lock(&self.shared.platform).support.as_ref().map(|h| crate::inbox::SupportTruth {
            budgets: scn.budgets().expect("validated"),
            ..crate::inbox::SupportTruth::of(h)
        });
        let mut verdict = check(&CheckInput {
            seed,
            world: &world,
            store: &snapshot,
            end,
            kill_deadline: Millis::from_secs(scn.assertions.kill_deadline_s),
            resume_within: Millis::from_secs(scn.control.tick_s + scn.assertions.kill_deadline_s),
            settled_until: end - Millis(3 * world.bucket().0),
            commit_within: scn.assertions.commit_within_s.map(Millis::from_secs),
            bank: bank.as_ref(),
            shop: shop.as_ref(),
            support: support.as_ref(),
        });
        if let Some(ep) = self.mttr.open.take() {
            self.mttr.samples.push(end_ms - ep.since_ms);
            verdict.violations.push(Violation {
                seed,
                invariant: "recovery".into(),
                detail: format!("crash at {}ms: not recovered by the end ({:?} orphans)", ep.since_ms, ep.orphans),
            });
        }
        if let Some(e) = sim_error {
            verdict.violations.push(Violation { seed, invariant: "sim_error".into(), detail: e });
        }
        let mut faults = self.faults;
        {
            let p = lock(&self.shared.platform);
            faults.crashes = u64::from(self.crashes);
            faults.api_timeouts = p.hung;
            faults.rate_limits = p.rate_limited;
            faults.acks_without_effect = p.acked_without_effect;
            faults.partial_batches = p.partial_batches;
            faults.stale_reads = p.stale_reads;
            faults.revoked_refusals = lock(&p.world).refused_calls();
            if let Some(h) = &p.bank {
                faults.bank_timeouts = h.hung;
                faults.bank_lost_replies = h.lost_replies;
                faults.bank_rate_limits = h.rate_limited;
                faults.bank_server_errors = h.server_errors;
                faults.bank_duplicate_requests = h.duplicate_requests;
                faults.bank_reversals =
                    bank.as_ref().map_or(0, |b| b.movements.iter().filter(|m| m.amount.minor > 0).count() as u64);
            }
            if let Some(h) = &p.shop {
                faults.shop_timeouts = h.hung;
                faults.shop_lost_replies = h.lost_replies;
                faults.shop_throttled = h.throttled;
                faults.shop_server_errors = h.server_errors;
            }
            if let Some(h) = &p.support {
                faults.inbox_timeouts = h.hung;
                faults.inbox_lost_replies = h.lost_replies;
                faults.inbox_rate_limits = h.rate_limited;
                faults.inbox_server_errors = h.server_errors;
                faults.model_failures = h.calls.values().map(|(_, failed)| failed).sum();
            }
            if let Some(wh) = &p.webhooks {
                faults.webhooks_true = wh.sent;
                faults.webhook_lies = wh.lies;
                faults.webhook_duplicates = wh.duplicates;
                faults.webhooks_lost = wh.lost;
            }
        }
        let t = tally(&world, &snapshot);
        SeedReport {
            seed,
            digest: digest(&snapshot.events),
            mttr_ms: self.mttr.samples,
            leak_cents: verdict.leak_cents,
            violations: verdict.violations,
            kills: t.kills,
            losers_killed: t.losers_killed,
            winners_killed: t.kills - t.losers_killed,
            crashes: self.crashes,
            faults,
            crash_sites: self.crash_sites,
            events: snapshot.events.len(),
            log: opts.keep_events.then(|| snapshot.events.clone()),
            model_cents: t.model_cents,
            model_cents_by_page: t.model_cents_by_page,
            breakers: t.breakers,
            loop_crashes: lock(&self.shared.probe).loop_crashes,
            claims_by_worker: t.claims_by_worker,
            webhook_commits: t.webhook_commits,
            rerolls: t.rerolls,
            kills_by_brand: t.kills_by_brand,
            payouts: t.payouts,
            payouts_abandoned: t.payouts_abandoned,
            payables_refused: t.payables_refused,
            payouts_reversed: t.payouts_reversed,
            payout_days: payout_days(scn, &snapshot),
            refunds: t.refunds,
            refunds_abandoned: t.refunds_abandoned,
            escalations: t.escalations,
            resumes: t.resumes,
            collateral_held: t.collateral_held,
            claims_refused: t.claims_refused,
            parcels_tracked: lock(&self.shared.platform).shop.as_ref().map_or(0, |h| {
                h.brands.values().filter_map(|b| b.parcels.as_ref()).map(|p| p.reads).sum::<u64>() as u32
            }),
            orders_mirrored: snapshot.state.iter().filter(|r| r.1 == dlft_core::jobs::mirror::ORDERS_SCOPE).count()
                as u32,
            ring_refunds_before_caught: shop.as_ref().map_or(0, |s| s.ring_refunds_before_caught(&snapshot)),
            honest_refused: shop.as_ref().map_or(0, |s| s.honest_refused(&snapshot)),
            messages: support.as_ref().map_or(0, |s| s.inbound.iter().filter(|m| m.2 <= end).count() as u32),
            replies: replies(&snapshot, false),
            replies_flagged: replies(&snapshot, true),
            model_calls: support.as_ref().map(|s| s.calls.clone()).unwrap_or_default(),
            offer_refunds: snapshot
                .intents
                .iter()
                .filter(|i| {
                    i.phase == dlft_core::act::intent::IntentPhase::Committed
                        && matches!(i.action, dlft_core::act::intent::Action::Refund { .. })
                        && i.key.as_str().contains("/support-")
                })
                .count() as u32,
            model_calls_refused: snapshot
                .events
                .iter()
                .filter(|e| e.kind == dlft_core::telemetry::EventKind::Verdict && e.entity.starts_with("cost/"))
                .count() as u32,
            plan,
        }
    }
}

/// Reply intents committed (those whose message carried manipulation
/// signals, when `flagged`).
fn replies(snapshot: &dlft_core::store::Snapshot, flagged: bool) -> u32 {
    use dlft_core::act::intent::{Evidence, IntentPhase};
    snapshot
        .intents
        .iter()
        .filter(|i| i.phase == IntentPhase::Committed)
        .filter(|i| match &i.evidence {
            Evidence::Reply { reasons, .. } => !flagged || reasons.iter().any(|r| r.starts_with("manipulation signal")),
            _ => false,
        })
        .count() as u32
}

/// Days of the brands' calendar (their budgets' time zone) in which a
/// committed payout's reservation was made.
fn payout_days(scn: &Scenario, snapshot: &dlft_core::store::Snapshot) -> u32 {
    use dlft_core::envelope::budget::{Window, period_of};
    let Ok(Some(budgets)) = scn.budgets() else { return 0 };
    let days: std::collections::BTreeSet<String> = snapshot
        .intents
        .iter()
        .filter(|i| i.action.kind() == "payout" && i.phase == dlft_core::act::intent::IntentPhase::Committed)
        .map(|i| period_of(Window::Daily, &budgets.zone, i.opened_at).label)
        .collect();
    days.len() as u32
}
