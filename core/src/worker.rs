//! The worker: boot, fire schedules, and run one pool per job kind. Async
//! orchestration only: every decision it acts on comes from the pure modules
//! (`scheduler`, `estimator`, `policy`, `envelope`, `actuator`), and every
//! write goes through the fenced Store port.
//!
//! Each pool claims only its own kind, runs at most `concurrency` jobs at
//! once and abandons a job that runs past `job_timeout`, so a crash loop or a
//! hang in one kind cannot starve another. On shutdown the pools stop
//! claiming, drop what they are running (every step is idempotent) and hand
//! each claim back with its attempt.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use futures_util::future::{BoxFuture, FutureExt, try_join_all};
use futures_util::stream::{FuturesUnordered, StreamExt};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::act::intent::IntentOp;
use crate::config::{LoopConfig, PoolConfig, Sabotage, ScanConfig, WorkerConfig};
use crate::ids::{BrandId, Incarnation, JobId};
use crate::jobs::payables::PAYABLES_SCHEDULE;
use crate::jobs::{Attempt, JobError, Ports, run_task, scan};
use crate::probe::{Probe, Site};
use crate::propose::allocation::REROLL_SCHEDULE;
use crate::schedule::rules::{
    Admission, BACKFILL_MAX, Bound, CRASH_LOOP_SLOTS, TICK_SCHEDULE, admit, crash_loop_outlives_its_slot, due_slots,
    slot_of, slot_phase,
};
use crate::schedule::task::Task;
use crate::sense::ads::{AdsError, AdsPlatform};
use crate::sense::bank::{Bank, NoBank};
use crate::sense::models::Models;
#[cfg(doc)]
use crate::store::SlotOutcome;
use crate::store::{Claim, ClaimRequest, Lease, NewJob, Outcome, Presence, Store, StoreError, WriteBatch};
use crate::telemetry::CostRow;
use crate::time::{Clock, LastSeen, Millis, Timestamp};

/// A periodic schedule: its name, its period, and the job of a slot
/// (`(slot, now)`: the job runs as soon as the slot fires).
type Periodic = (&'static str, Millis, fn(Timestamp, Timestamp) -> NewJob);

pub struct Worker<S, A, C, P, R, B = NoBank> {
    pub ports: Ports<S, A, C, P, B>,
    pub cfg: WorkerConfig,
    pub loop_cfg: LoopConfig,
    /// Brands served with ports and settings of their own (an ad account,
    /// a currency, rules, scan pages). A brand of `cfg.brands` not here runs
    /// on `ports.ads` and `loop_cfg`.
    pub tenants: BTreeMap<BrandId, Tenant<A, B>>,
    pub rng: R,
    /// Set to stop gracefully (SIGTERM in production).
    pub stop: Arc<AtomicBool>,
    /// What the worker last achieved, for a health check to read.
    pub pulse: Arc<Pulse>,
}

/// One brand's own ports and settings.
pub struct Tenant<A, B = NoBank> {
    pub ads: A,
    /// The brand's bank account (payouts).
    pub bank: B,
    pub loop_cfg: LoopConfig,
}

/// What a running worker last achieved, written by the worker and read by
/// anyone (a health endpoint).
#[derive(Debug, Default)]
pub struct Pulse {
    /// The store last answered one of this worker's claim rounds.
    pub claim_round_at: LastSeen,
    /// The worker last claimed a job.
    pub claimed_at: LastSeen,
    /// The store last accepted the worker's presence beat.
    pub beat_at: LastSeen,
    /// [`Pulse::RUNNING`], [`Pulse::STOPPED`] or [`Pulse::REPLACED`].
    pub state: AtomicU8,
}

impl Pulse {
    pub const RUNNING: u8 = 0;
    /// Stopped as asked (`stop` set, or `until` reached).
    pub const STOPPED: u8 = 1;
    /// A newer boot of the same worker id replaced this one: it stopped.
    pub const REPLACED: u8 = 2;
}

/// What a pool's in-flight future comes back with.
enum Done {
    /// A job ran (or timed out); its outcome is still to be written.
    Ran { claim: Box<Claim>, result: Result<(), JobError>, costs: Vec<CostRow> },
    /// The attempt's outcome was written (or could not be): the job is no
    /// longer this pool's.
    Settled(JobId),
}

impl<
    S: Store,
    A: AdsPlatform + Models,
    C: Clock,
    P: Probe,
    R: RngCore + Send + Sync,
    B: Bank
        + crate::sense::payables::PayablesSource
        + crate::sense::shop::Shop
        + crate::sense::inbox::Inbox
        + crate::sense::models::TextVendors
        + crate::sense::claims::ClaimsSource
        + crate::sense::shipments::Shipments,
> Worker<S, A, C, P, R, B>
{
    /// Boots (retrying until the store answers), then runs the schedules and
    /// every pool until `until` (forever with `None`) or until `stop` is set.
    /// Returns early, with every loop stopped, as soon as the store says
    /// this incarnation was replaced (a newer boot of the same worker id):
    /// a replaced worker must not go on firing schedules while its pools
    /// can claim nothing.
    pub async fn run(&mut self, until: Option<Timestamp>) -> Result<(), StoreError> {
        let incarnation = self.boot().await;
        self.pulse.state.store(Pulse::RUNNING, Ordering::SeqCst);
        let mut pool_rngs: Vec<ChaCha8Rng> = Vec::new();
        for _ in &self.cfg.pools {
            pool_rngs.push(ChaCha8Rng::seed_from_u64(self.rng.next_u64()));
        }
        let this = &*self;
        let schedules = this.run_schedules(until).boxed();
        let pools = this
            .cfg
            .pools
            .iter()
            .zip(pool_rngs)
            .map(|(pool, rng)| this.run_pool(pool, incarnation, rng, until).boxed());
        let mut all: Vec<BoxFuture<'_, Result<(), StoreError>>> = vec![schedules];
        all.extend(pools);
        if let Some(presence) = &this.cfg.presence {
            all.push(this.run_presence(presence, incarnation, until).boxed());
        }
        // The first error (a replaced incarnation) drops every other loop.
        let out = try_join_all(all).await.map(drop);
        let state = if out.is_ok() { Pulse::STOPPED } else { Pulse::REPLACED };
        self.pulse.state.store(state, Ordering::SeqCst);
        out
    }

    /// Beats the worker's presence into the store every `every`: where it
    /// runs and that it is alive. Fails as soon as the store says this
    /// incarnation was replaced, even when the pools have nothing to claim.
    async fn run_presence(
        &self,
        cfg: &crate::config::PresenceConfig,
        incarnation: Incarnation,
        until: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let presence = Presence { worker: self.cfg.worker.clone(), incarnation, host: cfg.host.clone(), pid: cfg.pid };
        while !self.should_stop(until) {
            let now = self.ports.clock.now();
            match self.ports.store.beat(&presence, now).await {
                Ok(()) => self.pulse.beat_at.mark(now),
                Err(e @ StoreError::StaleIncarnation { .. }) => return Err(e),
                Err(_) => {} // unanswered: the next beat tries again
            }
            self.ports.clock.sleep(cfg.every).await;
        }
        Ok(())
    }

    /// A brand's ads and bank ports and settings: its own, or the worker's.
    fn tenant(&self, brand: &BrandId) -> (&A, &B, &LoopConfig) {
        match self.tenants.get(brand) {
            // Sabotage only: a brand's settings, on someone else's account.
            Some(t) if self.cfg.sabotage == Sabotage::SharedAccount => (&self.ports.ads, &self.ports.bank, &t.loop_cfg),
            Some(t) => (&t.ads, &t.bank, &t.loop_cfg),
            None => (&self.ports.ads, &self.ports.bank, &self.loop_cfg),
        }
    }

    fn should_stop(&self, until: Option<Timestamp>) -> bool {
        self.stop.load(Ordering::SeqCst) || until.is_some_and(|u| self.ports.clock.now() >= u)
    }

    async fn boot(&self) -> Incarnation {
        let mut failures = 0;
        let incarnation = loop {
            let now = self.ports.clock.now();
            match self.ports.store.boot(&self.cfg.worker, now).await {
                Ok(boot) => break boot.incarnation,
                Err(_) => {
                    failures += 1;
                    self.ports.clock.sleep(store_retry_delay(self.cfg.store_backoff, failures)).await;
                }
            }
        };
        // Jobs no pool of this build can run would wait forever: discard
        // them with the reason (best effort; the next boot tries again).
        let known: Vec<String> =
            self.cfg.pools.iter().flat_map(|p| p.kind.pool_kinds()).map(|k| k.as_str().to_string()).collect();
        let _ = self.ports.store.discard_unknown_kinds(&known, self.ports.clock.now()).await;
        incarnation
    }

    /// A brand's periodic schedules: the per-minute insights tick, the
    /// hourly bandit re-roll, and where the brand pays suppliers its
    /// payables run, each `(name, period, job of a slot)`. The tick pool's
    /// three kinds (insights, payables, claims) share one priority, so that
    /// it serves them oldest first: with slots coalesced, a pool that falls
    /// behind makes each wait at most one round of the others, where a
    /// higher priority for the ticks starved the payouts and refunds for good.
    fn periodic(&self, brand: &BrandId) -> Vec<Periodic> {
        fn tick_job(slot: Timestamp, now: Timestamp) -> NewJob {
            NewJob::new(&Task::PollInsights { slot }, 1, now, None)
        }
        fn reroll_job(slot: Timestamp, now: Timestamp) -> NewJob {
            NewJob::new(&Task::RerollBandit { slot }, 3, now, None)
        }
        fn payables_job(slot: Timestamp, now: Timestamp) -> NewJob {
            NewJob::new(&Task::PayPayables { slot }, 1, now, None)
        }
        let mut out: Vec<Periodic> =
            vec![(TICK_SCHEDULE, self.cfg.tick_every, tick_job), (REROLL_SCHEDULE, self.cfg.reroll_every, reroll_job)];
        fn claims_job(slot: Timestamp, now: Timestamp) -> NewJob {
            NewJob::new(&Task::ReviewClaims { slot }, 1, now, None)
        }
        if let Some(p) = &self.tenant(brand).2.payouts {
            out.push((PAYABLES_SCHEDULE, p.every, payables_job));
        }
        if let Some(r) = &self.tenant(brand).2.refunds {
            out.push((crate::jobs::refunds::REFUNDS_SCHEDULE, r.every, claims_job));
        }
        fn inbox_job(slot: Timestamp, now: Timestamp) -> NewJob {
            NewJob::new(&Task::AnswerInbox { slot }, 1, now, None)
        }
        if let Some(s) = &self.tenant(brand).2.support {
            out.push((crate::jobs::support::SUPPORT_SCHEDULE, s.every, inbox_job));
        }
        out
    }

    /// Fires due slots of every schedule: once across workers and restarts,
    /// with backfill after downtime capped at [`BACKFILL_MAX`], each brand's
    /// at its own offset within the period ([`slot_phase`]) when
    /// `spread_slots` is on. A slot whose
    /// schedule still has a job waiting for its first run is coalesced into
    /// it by the store ([`SlotOutcome::Coalesced`]): a pool that falls
    /// behind holds at most one waiting job per schedule, never a backlog.
    async fn run_schedules(&self, until: Option<Timestamp>) -> Result<(), StoreError> {
        let periodic: BTreeMap<BrandId, Vec<Periodic>> =
            self.cfg.brands.iter().map(|b| (b.clone(), self.periodic(b))).collect();
        // Each schedule's offset in its period, computed once.
        let phases: BTreeMap<(BrandId, usize), Millis> = periodic
            .iter()
            .flat_map(|(brand, schedules)| {
                schedules.iter().enumerate().map(move |(i, (name, every, _))| {
                    let phase =
                        if self.cfg.spread_slots { slot_phase(brand.as_str(), name, *every) } else { Millis(0) };
                    ((brand.clone(), i), phase)
                })
            })
            .collect();
        // Every brand's schedules, brand by brand: `(brand, schedule index)`.
        let mut last: BTreeMap<(BrandId, usize), Option<Timestamp>> = BTreeMap::new();
        let mut known = false;
        let mut scans_fired: BTreeMap<(BrandId, String), Timestamp> = BTreeMap::new();
        while !self.should_stop(until) {
            let now = self.ports.clock.now();
            if !known {
                // Learn where the schedules stand (another life of this worker,
                // or another worker, may have fired slots).
                if let Ok(rows) = self.ports.store.schedules().await {
                    for (brand, schedules) in &periodic {
                        for (i, (name, _, _)) in schedules.iter().enumerate() {
                            let row = rows.iter().find(|r| r.name == *name && &r.brand == brand);
                            last.insert((brand.clone(), i), row.and_then(|r| r.last_slot));
                        }
                    }
                    known = true;
                }
            }
            // What the scans know, read once a round for every brand's pages.
            let scanning = self.cfg.brands.iter().any(|b| self.tenant(b).2.scan.is_some());
            let activities = if scanning { self.ports.store.activities().await.ok() } else { None };
            for brand in &self.cfg.brands {
                if let (Some(scan), Some(known)) = (&self.tenant(brand).2.scan, &activities) {
                    self.fire_scans(brand, scan, known, now, &mut scans_fired).await;
                }
                for (i, (name, every, job)) in periodic[brand].iter().enumerate() {
                    let phase = phases[&(brand.clone(), i)];
                    let last = last.entry((brand.clone(), i)).or_default();
                    if known && last.is_none() && self.cfg.spread_slots {
                        // Never fired: start at the next slot at the brand's
                        // offset, not the one the worker boots in, or a
                        // thousand brands' hourly re-rolls all fall due at
                        // boot (measured: three minutes of claim lag).
                        *last = Some(slot_of(now, *every, phase));
                    }
                    if !known || last.is_some_and(|l| now < l + *every) {
                        continue;
                    }
                    for slot in due_slots(*last, now, *every, phase, BACKFILL_MAX) {
                        let job = job(slot, now).for_brand(brand);
                        if self.ports.store.fire_slot(name, slot, job, now).await.is_ok() {
                            *last = (*last).max(Some(slot));
                        }
                    }
                }
            }
            self.ports.clock.sleep(self.cfg.claim_poll).await;
        }
        Ok(())
    }

    /// Fires each store's scan when its adaptive cadence says it is due. The
    /// slot is the due time, but never older than the current day: a store
    /// whose scans keep failing is tried again daily, not never.
    async fn fire_scans(
        &self,
        brand: &BrandId,
        cfg: &ScanConfig,
        known: &[crate::store::PageActivity],
        now: Timestamp,
        fired: &mut BTreeMap<(BrandId, String), Timestamp>,
    ) {
        for page in &cfg.pages {
            let due = known.iter().find(|a| &a.page == page).map_or(Timestamp(0), |a| a.next_scan);
            if now < due {
                continue;
            }
            let slot = due.max(now.floor_to(cfg.cadence.daily));
            let fired_key = (brand.clone(), page.clone());
            if fired.get(&fired_key) == Some(&slot) {
                continue;
            }
            let job = NewJob::new(&Task::ScanStore { page: page.clone() }, 2, now, None).for_brand(brand);
            if self.ports.store.fire_slot(&scan::schedule_name(page), slot, job, now).await.is_ok() {
                fired.insert(fired_key, slot);
            }
        }
    }

    async fn run_pool(
        &self,
        pool: &PoolConfig,
        incarnation: Incarnation,
        mut rng: ChaCha8Rng,
        until: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let mut running: FuturesUnordered<BoxFuture<'_, Done>> = FuturesUnordered::new();
        // Claims of this pool not yet settled, to hand back on shutdown.
        let mut held: BTreeMap<JobId, Lease> = BTreeMap::new();
        // Claims in a row the store did not answer: the poll backs off.
        let mut failures = 0u32;
        loop {
            // The last claim filled every free place: more may be waiting,
            // so a place that frees up is filled at once, not at the next
            // poll (else a busy pool claims at most `concurrency` jobs a
            // poll: 40 a second for 8 places at 200 ms, measured as the
            // limit at 3,000 brands).
            let mut more = false;
            if self.should_stop(until) {
                drop(running); // cancel in-flight jobs at their next await
                self.hand_back(held).await;
                return Ok(());
            }
            let free = pool.concurrency.saturating_sub(held.len() as u32);
            if free > 0 {
                let req = ClaimRequest {
                    brands: self.cfg.brands.clone(),
                    worker: self.cfg.worker.clone(),
                    incarnation,
                    kinds: pool.kind.pool_kinds(),
                    limit: free,
                    lease_for: self.cfg.lease_for,
                };
                let now = self.ports.clock.now();
                match self.ports.store.claim(&req, now).await {
                    Ok(claims) => {
                        failures = 0;
                        self.pulse.claim_round_at.mark(now);
                        if !claims.is_empty() {
                            self.pulse.claimed_at.mark(now);
                        }
                        more = claims.len() as u32 == free;
                        for claim in claims {
                            held.insert(claim.lease.job, claim.lease.clone());
                            running.push(self.start(claim, pool.job_timeout).boxed());
                        }
                    }
                    Err(e @ StoreError::StaleIncarnation { .. }) => return Err(e),
                    Err(_) => failures += 1,
                }
            }
            // Wait for a job to finish or for the next poll, whichever is first.
            let wait = if failures == 0 {
                self.cfg.claim_poll
            } else {
                store_retry_delay(self.cfg.store_backoff, failures).max(self.cfg.claim_poll)
            };
            let poll = self.ports.clock.sleep(wait).fuse();
            futures_util::pin_mut!(poll);
            loop {
                if running.is_empty() {
                    (&mut poll).await;
                    break;
                }
                let next = running.select_next_some();
                futures_util::select_biased! {
                    done = next.fuse() => match done {
                        Done::Ran { claim, result, costs } => {
                            let outcome = self.outcome(&claim, result, &mut rng);
                            running.push(self.settle(claim.lease, outcome, costs).boxed());
                        }
                        Done::Settled(job) => {
                            held.remove(&job);
                            if more {
                                break;
                            }
                        }
                    },
                    () = poll => break,
                }
            }
        }
    }

    /// Graceful shutdown: every claim still held goes back with its attempt.
    async fn hand_back(&self, held: BTreeMap<JobId, Lease>) {
        for lease in held.values() {
            // Unanswered: the lease runs out and the job is re-claimed anyway.
            let _ = self.ports.store.release(lease, self.ports.clock.now()).await;
        }
    }

    /// A scheduled job the breaker refuses is discarded; if the schedule's
    /// slots before it crash-looped too, the schedule is disabled with it.
    /// (A store that does not answer: discarded; the next slot asks again.)
    async fn discard_or_trip(&self, job: &crate::store::Job, why: String) -> JobError {
        let Some(schedule) = &job.schedule else { return JobError::Permanent(why) };
        let previous = self.ports.store.finished_of_schedule(&job.brand, schedule, CRASH_LOOP_SLOTS - 1).await;
        match previous {
            Ok(prev)
                if crash_loop_outlives_its_slot(
                    prev.iter().map(|j| (j.state == crate::store::JobState::Discarded, j.resumes)),
                ) =>
            {
                JobError::Breaker(format!("{why}, in {CRASH_LOOP_SLOTS} slots of {schedule} in a row"))
            }
            _ => JobError::Permanent(why),
        }
    }

    /// Starts a claimed job: the breaker check, then the job under its timeout.
    async fn start(&self, claim: Claim, timeout: Millis) -> Done {
        let bound = claim.job.task().map_or(Bound::Breaker, |t| t.bound());
        let refused = match admit(claim.job.resumes, bound) {
            Admission::Run => None,
            Admission::Trip(why) => Some(JobError::Breaker(why)),
            Admission::Discard(why) => Some(self.discard_or_trip(&claim.job, why).await),
            Admission::SpendAttempt { key, why } => {
                let op = IntentOp::CountAttempt { key, cause: format!("circuit breaker: {why}") };
                let batch = WriteBatch { intents: vec![op], ..WriteBatch::default() };
                match self.ports.store.write(&claim.lease, batch, self.ports.clock.now()).await {
                    Ok(_) => None,
                    // No intent to spend (a sabotaged build): discarded like any other job.
                    Err(StoreError::NotFound(_)) => Some(JobError::Permanent(why)),
                    Err(e) => Some(JobError::Store(e)),
                }
            }
        };
        if let Some(e) = refused {
            return Done::Ran { claim: Box::new(claim), result: Err(e), costs: vec![] };
        }
        // The job runs on its brand's ports and settings, and on nothing else.
        let (ads, bank, loop_cfg) = self.tenant(&claim.job.brand);
        let ports = Ports { store: &self.ports.store, ads, clock: &self.ports.clock, probe: &self.ports.probe, bank };
        let mut attempt = Attempt::new(claim.lease.clone(), claim.job.brand.clone(), loop_cfg.currency);
        let result = {
            let run = run_task(&ports, loop_cfg, self.cfg.sabotage, &mut attempt, &claim.job).fuse();
            let limit = self.ports.clock.sleep(timeout).fuse();
            let beat = self.heartbeat(&claim.lease).fuse();
            futures_util::pin_mut!(run, limit, beat);
            futures_util::select_biased! {
                r = run => r,
                e = beat => Err(JobError::Store(e)),
                () = limit => Err(JobError::RetryAfter {
                    wait: Millis(0),
                    why: format!("hung: no result within {timeout:?}"),
                }),
            }
        };
        Done::Ran { claim: Box::new(claim), result, costs: attempt.costs }
    }

    /// Keeps a running attempt's lease alive while the job waits without
    /// writing (a read-back confirmation window, a slow vendor): an empty
    /// fenced write every third of the lease. Returns only when the attempt
    /// lost its job (fenced) or its process was replaced; the job then stops.
    async fn heartbeat(&self, lease: &Lease) -> StoreError {
        let every = Millis((self.cfg.lease_for.0 / 3).max(1));
        loop {
            self.ports.clock.sleep(every).await;
            // Unanswered: try again next beat (the lease may run out meanwhile).
            if let Err(e @ (StoreError::Fenced { .. } | StoreError::StaleIncarnation { .. })) =
                self.ports.store.write(lease, WriteBatch::default(), self.ports.clock.now()).await
            {
                return e;
            }
        }
    }

    /// What an attempt's result means for its job; `None`: write nothing
    /// (another attempt owns the job).
    fn outcome(&self, claim: &Claim, result: Result<(), JobError>, rng: &mut ChaCha8Rng) -> Option<Outcome> {
        let now = self.ports.clock.now();
        let job = &claim.job;
        Some(match result {
            Ok(()) => Outcome::Completed,
            Err(JobError::Store(StoreError::Fenced { .. })) => return None,
            Err(JobError::Breaker(error)) => Outcome::Trip { error },
            Err(JobError::Permanent(error)) => Outcome::Discard { error },
            Err(e) => {
                let floor = match &e {
                    JobError::RetryAfter { wait, .. } => *wait,
                    JobError::Ads(AdsError::RateLimited { retry_after, .. }) => *retry_after,
                    JobError::Bank(crate::sense::bank::BankError::RateLimited { retry_after }) => *retry_after,
                    JobError::Shop(crate::sense::shop::ShopError::Throttled { retry_after }) => *retry_after,
                    JobError::Inbox(crate::sense::inbox::InboxError::RateLimited { retry_after }) => *retry_after,
                    _ => Millis(0),
                };
                let errors = job.errors.len() as u32 + 1;
                match self.cfg.retry.next_run(errors, job.created_at, now, floor, rng) {
                    Some(at) => Outcome::Retry { at, error: e.to_string() },
                    None => Outcome::Discard { error: format!("{e} (retries exhausted)") },
                }
            }
        })
    }

    /// Writes the outcome of an attempt.
    async fn settle(&self, lease: Lease, outcome: Option<Outcome>, costs: Vec<CostRow>) -> Done {
        let job = lease.job;
        if let Some(outcome) = outcome {
            self.ports.probe.reached(Site::BeforeFinish, "job").await;
            // If the store does not answer, the lease runs out and the job is
            // re-claimed; every step is idempotent, so re-running is safe.
            let _ = self.ports.store.finish(&lease, outcome, costs, self.ports.clock.now()).await;
        }
        Done::Settled(job)
    }
}

/// How long to wait after the store failed to answer `failures` times in a
/// row: `base`, doubling per failure, at most 8 × `base`.
pub fn store_retry_delay(base: Millis, failures: u32) -> Millis {
    Millis(base.0.saturating_mul(1 << failures.saturating_sub(1).min(3)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_retries_back_off_to_a_cap() {
        let d: Vec<u64> = (1..=6).map(|f| store_retry_delay(Millis(500), f).0).collect();
        assert_eq!(d, vec![500, 1_000, 2_000, 4_000, 4_000, 4_000]);
    }
}
