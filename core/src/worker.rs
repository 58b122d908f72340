//! The worker: boot, fire the tick schedule, claim jobs, run them, finish
//! them. Async orchestration only: every decision it acts on comes from the
//! pure modules (`estimator`, `policy`, `envelope`, `scheduler`), and every
//! write goes through the fenced Store port.

use rand::RngCore;

use crate::ads::{AdsError, AdsPlatform};
use crate::config::{LoopConfig, WorkerConfig};
use crate::ids::Incarnation;
use crate::money::Money;
use crate::probe::{Probe, Site};
use crate::scheduler::{TICK_SCHEDULE, slot_of};
use crate::store::{Claim, ClaimRequest, JobKind, Lease, NewJob, Outcome, Store, StoreError, Task, WriteBatch};
use crate::telemetry::CostRow;
use crate::time::{Clock, Millis, Timestamp};
use crate::{actuator, tick};

/// Everything the loop talks to.
pub struct Ports<S, A, C, P> {
    pub store: S,
    pub ads: A,
    pub clock: C,
    pub probe: P,
}

/// Why a job attempt stopped short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ads(#[from] AdsError),
    /// Try again no sooner than this.
    #[error("retry after {wait:?}: {why}")]
    RetryAfter { wait: Millis, why: String },
    /// Retrying cannot help.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// One attempt of one job: its lease, and the cost rows of its external calls
/// not yet written (they go out with the attempt's next write, atomically).
pub struct Attempt {
    pub lease: Lease,
    pub costs: Vec<CostRow>,
    pub currency: crate::money::Currency,
}

impl Attempt {
    pub fn record_call<T>(&mut self, at: Timestamp, op: &str, result: &Result<T, AdsError>) {
        self.costs.push(CostRow {
            at,
            vendor: "meta".into(),
            op: op.into(),
            ok: result.is_ok(),
            cost: Money::zero(self.currency),
        });
    }

    /// A batch carrying the pending cost rows.
    pub fn batch(&mut self) -> WriteBatch {
        WriteBatch { costs: std::mem::take(&mut self.costs), ..WriteBatch::default() }
    }
}

pub struct Worker<S, A, C, P, R> {
    pub ports: Ports<S, A, C, P>,
    pub cfg: WorkerConfig,
    pub loop_cfg: LoopConfig,
    pub rng: R,
}

impl<S: Store, A: AdsPlatform, C: Clock, P: Probe, R: RngCore + Send> Worker<S, A, C, P, R> {
    /// Boots (retrying until the store answers), then loops until `until`
    /// (forever with `None`). Returns early only if the store says this
    /// process was replaced by a newer incarnation.
    pub async fn run(&mut self, until: Option<Timestamp>) -> Result<(), StoreError> {
        let incarnation = self.boot().await;
        let mut next_tick = Timestamp(0);
        loop {
            let now = self.ports.clock.now();
            if until.is_some_and(|u| now >= u) {
                return Ok(());
            }
            if now >= next_tick {
                next_tick = self.fire_tick(now).await.unwrap_or(next_tick);
            }
            let req = ClaimRequest {
                worker: self.cfg.worker.clone(),
                incarnation,
                kinds: JobKind::ALL.to_vec(),
                limit: self.cfg.claim_batch,
                lease_for: self.cfg.lease_for,
            };
            match self.ports.store.claim(&req, now).await {
                Ok(claims) => {
                    for claim in claims {
                        self.execute(claim).await;
                    }
                }
                Err(e @ StoreError::StaleIncarnation { .. }) => return Err(e),
                Err(_) => {
                    self.ports.clock.sleep(self.cfg.store_backoff).await;
                    continue;
                }
            }
            self.ports.clock.sleep(self.cfg.claim_poll).await;
        }
    }

    async fn boot(&mut self) -> Incarnation {
        loop {
            let now = self.ports.clock.now();
            match self.ports.store.boot(&self.cfg.worker, now).await {
                Ok(boot) => return boot.incarnation,
                Err(_) => self.ports.clock.sleep(self.cfg.store_backoff).await,
            }
        }
    }

    /// Fires the current tick slot (once across workers and restarts; after
    /// downtime only the current slot fires: backfill is capped at one).
    /// Returns when the next slot is due, or `None` if the store did not answer.
    async fn fire_tick(&mut self, now: Timestamp) -> Option<Timestamp> {
        let slot = slot_of(now, self.cfg.tick_every);
        let job = NewJob { task: Task::PollInsights { slot }, priority: 1, run_at: now, idempotency_key: None };
        match self.ports.store.fire_slot(TICK_SCHEDULE, slot, job, now).await {
            Ok(_) => Some(slot + self.cfg.tick_every),
            Err(_) => None,
        }
    }

    async fn execute(&mut self, claim: Claim) {
        let mut attempt = Attempt { lease: claim.lease.clone(), costs: Vec::new(), currency: self.loop_cfg.currency };
        let sabotage = self.cfg.sabotage;
        let result = match &claim.job.task {
            Task::PollInsights { slot } => tick::run(&self.ports, &self.loop_cfg, sabotage, &mut attempt, *slot).await,
            Task::KillAd { key, ad } => {
                actuator::run_kill(&self.ports, &self.loop_cfg, sabotage, &mut attempt, key, ad).await
            }
        };
        self.ports.probe.reached(Site::BeforeFinish).await;
        let now = self.ports.clock.now();
        let outcome = match result {
            Ok(()) => Outcome::Completed,
            // Another attempt owns the job now: write nothing more.
            Err(JobError::Store(StoreError::Fenced { .. })) => return,
            Err(JobError::Permanent(error)) => Outcome::Discard { error },
            Err(e) if self.cfg.retry.exhausted(claim.job.attempt) => Outcome::Discard { error: e.to_string() },
            Err(e) => {
                let floor = match &e {
                    JobError::RetryAfter { wait, .. } => *wait,
                    JobError::Ads(AdsError::RateLimited { retry_after, .. }) => *retry_after,
                    _ => Millis(0),
                };
                let wait = self.cfg.retry.backoff(claim.job.attempt, &mut self.rng).max(floor);
                Outcome::Retry { at: now + wait, error: e.to_string() }
            }
        };
        let costs = std::mem::take(&mut attempt.costs);
        // If the store does not answer, the lease runs out and the job is
        // re-claimed; every step is idempotent, so re-running is safe.
        let _ = self.ports.store.finish(&claim.lease, outcome, costs, now).await;
    }
}
