//! `MemStore`: the Store port's semantics as a plain in-memory state machine.
//!
//! Deterministic (B-trees only, ids from counters), no I/O. The sim's database
//! host serves it over the simulated network; its state outlives worker
//! crashes because it lives in the database host, not in the worker.

use std::collections::{BTreeMap, BTreeSet};
use std::future::{Future, ready};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::ids::{AdId, BrandId, ClaimToken, IdempotencyKey, Incarnation, JobId, WorkerId};
use crate::propose::allocation::allocation_event;
use crate::sense::ads::InsightRow;
use crate::telemetry::{Block, CostRow, Event, EventKind};
use crate::time::Timestamp;

use super::plan::{
    Ledger, Ready, Transition, fair_order, intent_keys, ledger_accounts, ledger_needs, plan_intents, spend_transition,
};
use crate::act::intent::{ActionRow, Intent};
use crate::envelope::budget::{Account, AccountKey, Budgets, Transfer};

use super::{
    BatchResult, Boot, Claim, ClaimRequest, Enqueued, IntentFilter, Job, JobState, Lease, LeaseRow, NewJob, Outcome,
    PageActivity, Presence, ScheduleRow, SlotOutcome, Snapshot, Store, StoreError, WorkerRow, WriteBatch,
};
use crate::schedule::rules::GHOST_AMNESTY;

/// Upper bound on one claim batch: a named limit, not an accident.
pub const CLAIM_LIMIT_MAX: u32 = 1_000;

#[derive(Debug, Default, Clone)]
pub struct MemStore {
    /// Live jobs (available or running): the hot table.
    jobs: BTreeMap<JobId, Job>,
    /// Final jobs, moved out of the hot table.
    finished: BTreeMap<JobId, Job>,
    slots: BTreeSet<(BrandId, String, Timestamp)>,
    schedules: BTreeMap<(BrandId, String), ScheduleRow>,
    activities: BTreeMap<String, PageActivity>,
    /// Keyed state rows: (brand, scope, key) → body.
    state: BTreeMap<(BrandId, String, String), String>,
    allocations: BTreeMap<(BrandId, Timestamp), crate::propose::allocation::Allocation>,
    workers: BTreeMap<WorkerId, Incarnation>,
    /// The last beat of each worker's current incarnation.
    presence: BTreeMap<WorkerId, (Presence, Timestamp)>,
    intents: BTreeMap<IdempotencyKey, Intent>,
    /// Each brand's intent keys by action kind, and its open ones: a
    /// brand's read clones only the rows it admits (a tick every minute
    /// read a month of refunds before).
    intents_by_kind: BTreeMap<(BrandId, &'static str), BTreeSet<IdempotencyKey>>,
    open_intents: BTreeMap<BrandId, BTreeSet<IdempotencyKey>>,
    actions: Vec<ActionRow>,
    /// Keyed by brand, ad and bucket: an ad id is one platform's, and two
    /// brands' accounts may reuse one. A brand's window is read one ad at a
    /// time from `since` (a seek per ad), never through its whole history.
    spend: BTreeMap<(BrandId, AdId, Timestamp), InsightRow>,
    events: Vec<Event>,
    costs: Vec<CostRow>,
    budgets: BTreeMap<BrandId, Budgets>,
    accounts: BTreeMap<AccountKey, Account>,
    transfers: BTreeMap<IdempotencyKey, Transfer>,
    next_job: u64,
    next_token: u64,
}

struct Ev<'a> {
    brand: Option<&'a BrandId>,
    block: Block,
    kind: EventKind,
    entity: String,
    before: &'a str,
    after: &'a str,
    cause: String,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn log(&mut self, at: Timestamp, ev: Ev<'_>) {
        let seq = self.events.len() as u64 + 1;
        self.events.push(Event {
            seq,
            at,
            brand: ev.brand.cloned(),
            block: ev.block,
            kind: ev.kind,
            entity: ev.entity,
            before: ev.before.to_string(),
            after: ev.after.to_string(),
            cause: ev.cause,
            origin: None,
        });
    }

    fn log_transition(&mut self, at: Timestamp, brand: &BrandId, t: Transition) {
        let seq = self.events.len() as u64 + 1;
        let Transition { block, kind, entity, before, after, cause } = t;
        self.events.push(Event {
            seq,
            at,
            brand: Some(brand.clone()),
            block,
            kind,
            entity,
            before,
            after,
            cause,
            origin: None,
        });
    }

    pub fn boot(&mut self, worker: &WorkerId, now: Timestamp) -> Boot {
        let incarnation = Incarnation(self.workers.get(worker).map_or(1, |i| i.0 + 1));
        self.workers.insert(worker.clone(), incarnation);
        self.log(
            now,
            Ev {
                brand: None,
                block: Block::Scheduler,
                kind: EventKind::WorkerBooted,
                entity: worker.to_string(),
                before: "",
                after: &format!("{incarnation:?}"),
                cause: "boot".into(),
            },
        );
        // A worker id runs in one process at a time, so whatever its earlier
        // incarnations hold is orphaned: release it now rather than waiting
        // for the lease to run out. This is what keeps MTTR near the restart
        // delay. Rows of any worker whose lease ran out hours ago are ghosts
        // (a worker that never came back): release them too, and say so.
        let mut orphans = Vec::new();
        let mut ghosts = Vec::new();
        for j in self.jobs.values().filter(|j| j.state == JobState::Running) {
            let Some(l) = &j.lease else { continue };
            if &l.worker == worker {
                orphans.push(j.id);
            } else if l.expires_at + GHOST_AMNESTY <= now {
                ghosts.push(j.id);
            }
        }
        for (id, why) in
            orphans.iter().map(|id| (id, "boot sweep")).chain(ghosts.iter().map(|id| (id, "ghost amnesty")))
        {
            let job = self.jobs.get_mut(id).expect("orphan is live");
            let held = job.lease.take().expect("running job has a lease");
            // run_at stays as it was: the job was already due, so it resumes
            // ahead of work queued after it (MTTR counts its re-claim).
            job.state = JobState::Available;
            job.interrupted = true;
            let brand = job.brand.clone();
            self.log(
                now,
                Ev {
                    brand: Some(&brand),
                    block: Block::Scheduler,
                    kind: EventKind::JobReleased,
                    entity: id.to_string(),
                    before: "running",
                    after: "available",
                    cause: format!("{why}: held by {} {:?} until {}", held.worker, held.incarnation, held.expires_at),
                },
            );
        }
        orphans.extend(ghosts);
        Boot { incarnation, released: orphans }
    }

    pub fn enqueue(&mut self, job: NewJob, now: Timestamp) -> Enqueued {
        if let Some(key) = &job.idempotency_key
            && let Some(existing) =
                self.jobs.values().find(|j| j.idempotency_key.as_ref() == Some(key) && j.kind == job.kind)
        {
            return Enqueued::Duplicate(existing.id);
        }
        self.next_job += 1;
        let id = JobId(self.next_job);
        self.log(
            now,
            Ev {
                brand: Some(&job.brand),
                block: Block::Scheduler,
                kind: EventKind::JobEnqueued,
                entity: id.to_string(),
                before: "none",
                after: "available",
                cause: format!("{} {}", job.kind, job.payload),
            },
        );
        self.jobs.insert(
            id,
            Job {
                id,
                brand: job.brand,
                kind: job.kind,
                payload: job.payload,
                priority: job.priority,
                run_at: job.run_at,
                created_at: now,
                state: JobState::Available,
                attempt: 0,
                resumes: 0,
                interrupted: false,
                errors: Vec::new(),
                lease: None,
                idempotency_key: job.idempotency_key,
                schedule: None,
                checkpoint: None,
            },
        );
        Enqueued::Created(id)
    }

    pub fn fire_slot(&mut self, schedule: &str, slot: Timestamp, job: NewJob, now: Timestamp) -> SlotOutcome {
        let brand = job.brand.clone();
        let row = self.schedules.entry((brand.clone(), schedule.to_string())).or_insert_with(|| ScheduleRow {
            brand: brand.clone(),
            name: schedule.to_string(),
            enabled: true,
            reason: "default".into(),
            changed_at: now,
            last_slot: None,
        });
        if !row.enabled {
            return SlotOutcome::Disabled;
        }
        if !self.slots.insert((brand.clone(), schedule.to_string(), slot)) {
            return SlotOutcome::AlreadyFired;
        }
        row.last_slot = row.last_slot.max(Some(slot));
        let waiting = self
            .jobs
            .values()
            .find(|j| {
                j.brand == brand
                    && j.schedule.as_deref() == Some(schedule)
                    && j.state == JobState::Available
                    && j.attempt == 0
            })
            .map(|j| j.id);
        let (after, cause) = match waiting {
            Some(id) => ("coalesced", format!("{id} still waiting")),
            None => ("fired", "tick".to_string()),
        };
        self.log(
            now,
            Ev {
                brand: Some(&brand),
                block: Block::Scheduler,
                kind: EventKind::SlotFired,
                entity: format!("{schedule}@{}", slot.0),
                before: "",
                after,
                cause,
            },
        );
        if let Some(id) = waiting {
            return SlotOutcome::Coalesced(id);
        }
        let id = self.enqueue(job, now).id();
        if let Some(j) = self.jobs.get_mut(&id) {
            j.schedule = Some(schedule.to_string());
        }
        SlotOutcome::Fired(id)
    }

    pub fn set_schedule(&mut self, brand: &BrandId, name: &str, enabled: bool, reason: &str, now: Timestamp) {
        self.set_schedule_as(brand, name, enabled, reason, now, EventKind::ScheduleChanged);
    }

    fn set_schedule_as(
        &mut self,
        brand: &BrandId,
        name: &str,
        enabled: bool,
        reason: &str,
        now: Timestamp,
        kind: EventKind,
    ) {
        let row = self.schedules.entry((brand.clone(), name.to_string())).or_insert_with(|| ScheduleRow {
            brand: brand.clone(),
            name: name.to_string(),
            enabled: true,
            reason: "default".into(),
            changed_at: now,
            last_slot: None,
        });
        let before = if row.enabled { "enabled" } else { "disabled" };
        let after = if enabled { "enabled" } else { "disabled" };
        row.enabled = enabled;
        row.reason = reason.to_string();
        row.changed_at = now;
        self.log(
            now,
            Ev {
                brand: Some(brand),
                block: Block::Scheduler,
                kind,
                entity: name.to_string(),
                before,
                after,
                cause: reason.to_string(),
            },
        );
    }

    pub fn schedules(&self) -> Vec<ScheduleRow> {
        self.schedules.values().cloned().collect()
    }

    pub fn claim(&mut self, req: &ClaimRequest, now: Timestamp) -> Result<Vec<Claim>, StoreError> {
        assert!(req.limit <= CLAIM_LIMIT_MAX, "claim limit {} over {CLAIM_LIMIT_MAX}", req.limit);
        if self.workers.get(&req.worker) != Some(&req.incarnation) {
            // A stale incarnation (a process that was replaced) claims nothing.
            return Err(StoreError::StaleIncarnation { worker: req.worker.clone(), incarnation: req.incarnation });
        }
        let ready: Vec<Ready> = self
            .jobs
            .values()
            .filter(|j| req.kinds.iter().any(|k| k.as_str() == j.kind))
            .filter(|j| req.brands.contains(&j.brand))
            .filter(|j| match j.state {
                JobState::Available => j.run_at <= now,
                JobState::Running => j.lease.as_ref().is_some_and(|l| l.expires_at <= now),
                JobState::Completed | JobState::Discarded => false,
            })
            .map(|j| Ready { brand: j.brand.clone(), priority: j.priority, run_at: j.run_at, id: j.id })
            .collect();
        let ready = fair_order(ready, req.limit as usize);
        let mut claims = Vec::with_capacity(ready.len());
        for id in ready {
            self.next_token += 1;
            let token = ClaimToken(self.next_token);
            let job = self.jobs.get_mut(&id).expect("ready job is live");
            let before = job.state.as_str();
            let cause = match &job.lease {
                Some(old) => {
                    format!("claim by {}: lease of {} {:?} expired", req.worker, old.worker, old.incarnation)
                }
                None => format!("claim by {}", req.worker),
            };
            // A claim that takes over a dead attempt is a resume, not a retry.
            if job.interrupted || job.state == JobState::Running {
                job.resumes += 1;
            }
            job.interrupted = false;
            job.state = JobState::Running;
            job.attempt += 1;
            job.lease = Some(LeaseRow {
                token,
                worker: req.worker.clone(),
                incarnation: req.incarnation,
                expires_at: now + req.lease_for,
                lease_for: req.lease_for,
            });
            let claimed = job.clone();
            self.log(
                now,
                Ev {
                    brand: Some(&claimed.brand),
                    block: Block::Scheduler,
                    kind: EventKind::JobClaimed,
                    entity: id.to_string(),
                    before,
                    after: "running",
                    cause,
                },
            );
            claims.push(Claim { lease: Lease { job: id, token }, job: claimed });
        }
        Ok(claims)
    }

    fn check_fence(&self, lease: &Lease) -> Result<(), StoreError> {
        let fenced = || StoreError::Fenced { job: lease.job, token: lease.token };
        let job = self.jobs.get(&lease.job).ok_or_else(fenced)?;
        match (&job.state, &job.lease) {
            (JobState::Running, Some(l)) if l.token == lease.token => Ok(()),
            _ => Err(fenced()),
        }
    }

    pub fn write(&mut self, lease: &Lease, batch: WriteBatch, now: Timestamp) -> Result<BatchResult, StoreError> {
        self.check_fence(lease)?;
        // Everything the job writes is its own brand's.
        let brand = self.jobs[&lease.job].brand.clone();
        // Plan every intent op before changing anything: the batch is atomic.
        let current: BTreeMap<IdempotencyKey, Intent> = intent_keys(&batch.intents)
            .into_iter()
            .filter_map(|k| self.intents.get(&k).map(|i| (k, i.clone())))
            .collect();
        let needs = ledger_needs(&current, &batch.intents, &batch.charges);
        let mut ledger = Ledger::default();
        if !needs.is_empty() {
            ledger.budgets = self.budgets.get(&brand).cloned().unwrap_or_default();
            ledger.transfers =
                needs.transfers.iter().filter_map(|k| self.transfers.get(k).map(|t| (k.clone(), t.clone()))).collect();
            for (key, limit) in ledger_accounts(&current, &brand, &batch.intents, &batch.charges, &ledger, now) {
                let a = self.accounts.get(&key).cloned().unwrap_or_else(|| Account::empty(key.clone(), limit));
                ledger.accounts.insert(key, a);
            }
        }
        // As the SQL stores do (they create an account before locking it),
        // every account the batch could reserve against exists after it.
        let touched: Vec<Account> = ledger.accounts.values().cloned().collect();
        let plan = plan_intents(&current, &brand, batch.intents, batch.charges, ledger, now)?;
        for a in touched {
            self.accounts.entry(a.key.clone()).or_insert(a);
        }
        self.accounts.extend(plan.accounts);
        self.transfers.extend(plan.transfers);
        for row in batch.insights {
            self.upsert_spend(&brand, row, now);
        }
        for v in batch.verdicts {
            self.log(
                now,
                Ev {
                    brand: Some(&brand),
                    block: Block::Envelope,
                    kind: EventKind::Verdict,
                    entity: v.key.to_string(),
                    before: "proposed",
                    after: &serde_json::to_string(&v.decision).expect("serializes"),
                    cause: v.reason,
                },
            );
        }
        for c in &batch.tier_changes {
            self.log_transition(now, &brand, super::plan::tier_transition(&brand, c));
        }
        for op in batch.state {
            if let Some(t) = op.transition() {
                self.log_transition(now, &brand, t);
            }
            let key = (brand.clone(), op.scope, op.key);
            match op.body {
                Some(body) => self.state.insert(key, body),
                None => self.state.remove(&key),
            };
        }
        for (key, intent) in plan.changed {
            self.index_intent(&intent);
            self.intents.insert(key, intent);
        }
        self.actions.extend(plan.actions);
        for t in plan.events {
            self.log_transition(now, &brand, t);
        }
        let intents = plan.results;
        for job in batch.enqueue {
            self.enqueue(job.for_brand(&brand), now);
        }
        self.costs.extend(batch.costs.into_iter().chain(plan.charged).map(|c| CostRow { brand: brand.clone(), ..c }));
        if let Some(a) = batch.activity {
            self.activities.insert(a.page.clone(), a);
        }
        if let Some(a) = batch.allocation
            && !self.allocations.contains_key(&(brand.clone(), a.slot))
        {
            let a = crate::propose::allocation::Allocation { brand: brand.clone(), ..a };
            let before = self
                .allocations
                .keys()
                .rfind(|(b, _)| b == &brand)
                .map_or("none".to_string(), |(_, s)| s.0.to_string());
            let (entity, after, cause) = allocation_event(&a);
            self.allocations.insert((brand.clone(), a.slot), a);
            self.log(
                now,
                Ev {
                    brand: Some(&brand),
                    block: Block::Estimator,
                    kind: EventKind::AllocationRolled,
                    entity,
                    before: &before,
                    after: &after,
                    cause,
                },
            );
        }
        let job = self.jobs.get_mut(&lease.job).expect("fence checked");
        let held = job.lease.as_mut().expect("fence checked");
        held.expires_at = now + held.lease_for;
        if let Some(cp) = batch.checkpoint {
            let before = job.checkpoint.as_ref().map_or("none".to_string(), |c| c.step.clone());
            let after = cp.step.clone();
            job.checkpoint = Some(cp);
            self.log(
                now,
                Ev {
                    brand: Some(&brand),
                    block: Block::Scheduler,
                    kind: EventKind::PipelineStep,
                    entity: lease.job.to_string(),
                    before: &before,
                    after: &after,
                    cause: "checkpoint".into(),
                },
            );
        }
        Ok(BatchResult { intents, refused: plan.refused })
    }

    fn upsert_spend(&mut self, brand: &BrandId, row: InsightRow, now: Timestamp) {
        let key = (brand.clone(), row.ad.clone(), row.bucket_start);
        if let Some(t) = spend_transition(self.spend.get(&key), &row) {
            self.log_transition(now, brand, t);
            self.spend.insert(key, row);
        }
    }

    pub fn finish(
        &mut self,
        lease: &Lease,
        outcome: Outcome,
        costs: Vec<CostRow>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.check_fence(lease)?;
        let mut job = self.jobs.remove(&lease.job).expect("fence checked");
        let brand = job.brand.clone();
        self.costs.extend(costs.into_iter().map(|c| CostRow { brand: brand.clone(), ..c }));
        job.lease = None;
        let mut tripped = None;
        let (kind, after, cause) = match outcome {
            Outcome::Completed => {
                job.state = JobState::Completed;
                (EventKind::JobCompleted, JobState::Completed, "done".to_string())
            }
            Outcome::Retry { at, error } => {
                job.state = JobState::Available;
                job.run_at = at;
                job.errors.push(error.clone());
                (EventKind::JobRetried, JobState::Available, error)
            }
            Outcome::Discard { error } => {
                job.state = JobState::Discarded;
                job.errors.push(error.clone());
                (EventKind::JobDiscarded, JobState::Discarded, error)
            }
            Outcome::Trip { error } => {
                job.state = JobState::Discarded;
                job.errors.push(error.clone());
                tripped = job.schedule.clone().map(|s| (s, error.clone()));
                (EventKind::JobDiscarded, JobState::Discarded, format!("circuit breaker: {error}"))
            }
        };
        self.log(
            now,
            Ev {
                brand: Some(&brand),
                block: Block::Scheduler,
                kind,
                entity: lease.job.to_string(),
                before: "running",
                after: after.as_str(),
                cause,
            },
        );
        if job.state.is_final() {
            self.finished.insert(job.id, job);
        } else {
            self.jobs.insert(job.id, job);
        }
        if let Some((schedule, error)) = tripped {
            let reason = format!("circuit breaker opened by {}: {error}", lease.job);
            self.set_schedule_as(&brand, &schedule, false, &reason, now, EventKind::BreakerOpened);
        }
        Ok(())
    }

    pub fn discard_unknown_kinds(&mut self, known: &[String], now: Timestamp) -> Vec<JobId> {
        let unknown: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Available && !known.contains(&j.kind))
            .map(|j| j.id)
            .collect();
        for id in &unknown {
            let mut job = self.jobs.remove(id).expect("listed");
            let error = format!("unknown job kind {:?} (this build runs {known:?})", job.kind);
            job.state = JobState::Discarded;
            job.errors.push(error.clone());
            self.log(
                now,
                Ev {
                    brand: Some(&job.brand),
                    block: Block::Scheduler,
                    kind: EventKind::JobDiscarded,
                    entity: id.to_string(),
                    before: "available",
                    after: "discarded",
                    cause: error,
                },
            );
            self.finished.insert(*id, job);
        }
        unknown
    }

    pub fn release(&mut self, lease: &Lease, now: Timestamp) -> Result<(), StoreError> {
        self.check_fence(lease)?;
        let job = self.jobs.get_mut(&lease.job).expect("fence checked");
        job.lease = None;
        job.state = JobState::Available;
        job.attempt -= 1;
        let brand = job.brand.clone();
        self.log(
            now,
            Ev {
                brand: Some(&brand),
                block: Block::Scheduler,
                kind: EventKind::JobReleased,
                entity: lease.job.to_string(),
                before: "running",
                after: "available",
                cause: "graceful shutdown: attempt handed back".into(),
            },
        );
        Ok(())
    }

    pub fn spend_ledger(&self, brand: &BrandId, since: Timestamp) -> Vec<InsightRow> {
        self.spend_window(brand, since).into_iter().cloned().collect()
    }

    /// [`Store::spend_summary`] over the brand's window, cloning only the
    /// rows it keeps.
    pub fn spend_summary(&self, brand: &BrandId, since: Timestamp, fold_before: Timestamp) -> Vec<InsightRow> {
        super::fold_spend(self.spend_window(brand, since), fold_before)
    }

    /// The brand's rows at or after `since`, by ad then bucket: one seek
    /// per ad to its window, so a month of history is never walked.
    fn spend_window(&self, brand: &BrandId, since: Timestamp) -> Vec<&InsightRow> {
        use std::ops::Bound::{Excluded, Unbounded};
        let mut out = Vec::new();
        let mut after: Option<(BrandId, AdId, Timestamp)> = None;
        loop {
            let next = match &after {
                None => self.spend.range((brand.clone(), AdId::new(""), Timestamp(0))..).next(),
                Some(k) => self.spend.range((Excluded(k), Unbounded)).next(),
            };
            let Some(((b, ad, _), _)) = next else { break };
            if b != brand {
                break;
            }
            let end = (brand.clone(), ad.clone(), Timestamp(u64::MAX));
            let start = (brand.clone(), ad.clone(), since);
            out.extend(self.spend.range(start..=end.clone()).map(|(_, r)| r));
            after = Some(end);
        }
        out
    }

    pub fn activities(&self) -> Vec<PageActivity> {
        self.activities.values().cloned().collect()
    }

    pub fn state(&self, brand: &BrandId, scope: &str) -> Vec<(String, String)> {
        let from = (brand.clone(), scope.to_string(), String::new());
        self.state
            .range(from..)
            .take_while(|((b, s, _), _)| b == brand && s == scope)
            .map(|((_, _, k), v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn intents(&self) -> Vec<Intent> {
        self.intents.values().cloned().collect()
    }

    fn index_intent(&mut self, intent: &Intent) {
        let key = &intent.key;
        self.intents_by_kind.entry((intent.brand.clone(), intent.action.kind())).or_default().insert(key.clone());
        let open = self.open_intents.entry(intent.brand.clone()).or_default();
        if intent.phase.is_final() {
            open.remove(key);
        } else {
            open.insert(key.clone());
        }
    }

    /// The intents of one brand that `filter` admits, by key: found through
    /// the index, so a read costs what it returns, not the brand's history
    /// (a tick reads its brand's every minute).
    pub fn brand_intents(&self, brand: &BrandId, filter: &IntentFilter) -> Vec<Intent> {
        let mut keys: BTreeSet<&IdempotencyKey> = BTreeSet::new();
        let rows = self.intents_by_kind.range((brand.clone(), "")..).take_while(|((b, _), _)| b == brand);
        for ((_, kind), of_kind) in rows {
            if filter.kinds.as_ref().is_none_or(|want| want.iter().any(|w| w == kind)) {
                keys.extend(of_kind);
            }
        }
        if filter.open {
            keys.extend(self.open_intents.get(brand).into_iter().flatten());
        }
        keys.extend(filter.keys.iter().filter(|k| self.intents.get(*k).is_some_and(|i| &i.brand == brand)));
        keys.into_iter().map(|k| self.intents[k].clone()).collect()
    }

    pub fn intent(&self, key: &IdempotencyKey) -> Option<Intent> {
        self.intents.get(key).cloned()
    }

    /// Live jobs (available or running), by id.
    pub fn live_jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id).or_else(|| self.finished.get(&id))
    }

    /// The newest `n` finished jobs of `brand`'s `schedule`, newest first.
    pub fn finished_of_schedule(&self, brand: &BrandId, schedule: &str, n: usize) -> Vec<Job> {
        self.finished
            .values()
            .rev()
            .filter(|j| &j.brand == brand && j.schedule.as_deref() == Some(schedule))
            .take(n)
            .cloned()
            .collect()
    }

    /// Records a beat of `p`'s incarnation; refused once it was replaced.
    pub fn beat(&mut self, p: &Presence, now: Timestamp) -> Result<(), StoreError> {
        if self.workers.get(&p.worker) != Some(&p.incarnation) {
            return Err(StoreError::StaleIncarnation { worker: p.worker.clone(), incarnation: p.incarnation });
        }
        self.presence.insert(p.worker.clone(), (p.clone(), now));
        Ok(())
    }

    /// Every worker id, with the presence of its current incarnation.
    pub fn workers(&self) -> Vec<WorkerRow> {
        self.workers
            .iter()
            .map(|(worker, &incarnation)| {
                let beat = self.presence.get(worker).filter(|(p, _)| p.incarnation == incarnation);
                WorkerRow {
                    worker: worker.clone(),
                    incarnation,
                    host: beat.map_or_else(String::new, |(p, _)| p.host.clone()),
                    pid: beat.map_or(0, |(p, _)| p.pid),
                    beat_at: beat.map(|&(_, at)| at),
                }
            })
            .collect()
    }

    pub fn current_incarnation(&self, worker: &WorkerId) -> Option<Incarnation> {
        self.workers.get(worker).copied()
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The rows after `seq` (a row's seq is its position, from 1).
    pub fn events_after(&self, seq: u64) -> &[Event] {
        let from = usize::try_from(seq).unwrap_or(usize::MAX).min(self.events.len());
        debug_assert!(from == 0 || self.events[from - 1].seq == seq);
        &self.events[from..]
    }

    /// The snapshot, moved out rather than cloned: what a run's checker
    /// reads once at its end (a month's store is gigabytes; a clone doubled
    /// the run's peak memory).
    pub fn into_snapshot(self) -> Snapshot {
        let (schedules, activities, budgets) = (self.schedules(), self.activities(), self.budgets());
        let (accounts, transfers) = (self.accounts(None), self.transfers());
        let mut jobs: Vec<Job> = self.jobs.into_values().chain(self.finished.into_values()).collect();
        jobs.sort_by_key(|j| j.id);
        Snapshot {
            jobs,
            intents: self.intents.into_values().collect(),
            actions: self.actions,
            spend: self.spend.into_values().collect(),
            events: self.events,
            costs: self.costs,
            schedules,
            activities,
            allocations: self.allocations.into_values().collect(),
            budgets,
            accounts,
            transfers,
            state: self.state.into_iter().map(|((b, scope, key), body)| (b, scope, key, body)).collect(),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut jobs: Vec<Job> = self.jobs.values().chain(self.finished.values()).cloned().collect();
        jobs.sort_by_key(|j| j.id);
        Snapshot {
            jobs,
            intents: self.intents(),
            actions: self.actions.clone(),
            spend: self.spend.values().cloned().collect(),
            events: self.events.clone(),
            costs: self.costs.clone(),
            schedules: self.schedules(),
            activities: self.activities(),
            allocations: self.allocations.values().cloned().collect(),
            budgets: self.budgets(),
            accounts: self.accounts(None),
            transfers: self.transfers(),
            state: self
                .state
                .iter()
                .map(|((b, scope, key), body)| (b.clone(), scope.clone(), key.clone(), body.clone()))
                .collect(),
        }
    }

    pub fn set_budgets(&mut self, brand: &BrandId, budgets: &Budgets, now: Timestamp) {
        let before = self.budgets.get(brand).map_or("none".to_string(), Budgets::describe);
        let after = budgets.describe();
        if before == after {
            return;
        }
        self.budgets.insert(brand.clone(), budgets.clone());
        self.log(
            now,
            Ev {
                brand: Some(brand),
                block: Block::Envelope,
                kind: EventKind::BudgetsSet,
                entity: format!("budgets/{brand}"),
                before: &before,
                after: &after,
                cause: "declared".into(),
            },
        );
    }

    pub fn budgets(&self) -> Vec<(BrandId, Budgets)> {
        self.budgets.iter().map(|(b, x)| (b.clone(), x.clone())).collect()
    }

    pub fn accounts(&self, brand: Option<&BrandId>) -> Vec<Account> {
        self.accounts.values().filter(|a| brand.is_none_or(|b| &a.key.brand == b)).cloned().collect()
    }

    pub fn transfers(&self) -> Vec<Transfer> {
        self.transfers.values().cloned().collect()
    }

    pub fn allocation(&self, brand: &BrandId) -> Option<crate::propose::allocation::Allocation> {
        self.allocations.iter().rfind(|((b, _), _)| b == brand).map(|(_, a)| a.clone())
    }
}

/// A `MemStore` behind a mutex, usable as the Store port in-process.
#[derive(Clone, Debug, Default)]
pub struct SharedMemStore(Arc<Mutex<MemStore>>);

impl SharedMemStore {
    pub fn new() -> SharedMemStore {
        SharedMemStore::default()
    }

    pub fn lock(&self) -> MutexGuard<'_, MemStore> {
        // A panic while holding the lock is a bug already reported; the data is plain.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Store for SharedMemStore {
    fn boot(&self, worker: &WorkerId, now: Timestamp) -> impl Future<Output = Result<Boot, StoreError>> + Send {
        ready(Ok(self.lock().boot(worker, now)))
    }
    fn enqueue(&self, job: NewJob, now: Timestamp) -> impl Future<Output = Result<Enqueued, StoreError>> + Send {
        ready(Ok(self.lock().enqueue(job, now)))
    }
    fn fire_slot(
        &self,
        schedule: &str,
        slot: Timestamp,
        job: NewJob,
        now: Timestamp,
    ) -> impl Future<Output = Result<SlotOutcome, StoreError>> + Send {
        ready(Ok(self.lock().fire_slot(schedule, slot, job, now)))
    }
    fn schedules(&self) -> impl Future<Output = Result<Vec<ScheduleRow>, StoreError>> + Send {
        ready(Ok(self.lock().schedules()))
    }
    fn set_schedule(
        &self,
        brand: &BrandId,
        name: &str,
        enabled: bool,
        reason: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.lock().set_schedule(brand, name, enabled, reason, now);
        ready(Ok(()))
    }
    fn discard_unknown_kinds(
        &self,
        known: &[String],
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<JobId>, StoreError>> + Send {
        ready(Ok(self.lock().discard_unknown_kinds(known, now)))
    }
    fn release(&self, lease: &Lease, now: Timestamp) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(self.lock().release(lease, now))
    }
    fn claim(&self, req: &ClaimRequest, now: Timestamp) -> impl Future<Output = Result<Vec<Claim>, StoreError>> + Send {
        ready(self.lock().claim(req, now))
    }
    fn write(
        &self,
        lease: &Lease,
        batch: WriteBatch,
        now: Timestamp,
    ) -> impl Future<Output = Result<BatchResult, StoreError>> + Send {
        ready(self.lock().write(lease, batch, now))
    }
    fn finish(
        &self,
        lease: &Lease,
        outcome: Outcome,
        costs: Vec<CostRow>,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(self.lock().finish(lease, outcome, costs, now))
    }
    fn spend_ledger(
        &self,
        brand: &BrandId,
        since: Timestamp,
    ) -> impl Future<Output = Result<Vec<InsightRow>, StoreError>> + Send {
        ready(Ok(self.lock().spend_ledger(brand, since)))
    }
    fn spend_summary(
        &self,
        brand: &BrandId,
        since: Timestamp,
        fold_before: Timestamp,
    ) -> impl Future<Output = Result<Vec<InsightRow>, StoreError>> + Send {
        ready(Ok(self.lock().spend_summary(brand, since, fold_before)))
    }
    fn job(&self, id: JobId) -> impl Future<Output = Result<Option<Job>, StoreError>> + Send {
        ready(Ok(self.lock().job(id).cloned()))
    }
    fn finished_of_schedule(
        &self,
        brand: &BrandId,
        schedule: &str,
        n: usize,
    ) -> impl Future<Output = Result<Vec<Job>, StoreError>> + Send {
        ready(Ok(self.lock().finished_of_schedule(brand, schedule, n)))
    }
    fn events(&self, after: u64) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send {
        ready(Ok(self.lock().events_after(after).to_vec()))
    }
    fn intents(&self) -> impl Future<Output = Result<Vec<Intent>, StoreError>> + Send {
        ready(Ok(self.lock().intents()))
    }
    fn brand_intents(
        &self,
        brand: &BrandId,
        filter: &IntentFilter,
    ) -> impl Future<Output = Result<Vec<Intent>, StoreError>> + Send {
        ready(Ok(self.lock().brand_intents(brand, filter)))
    }
    fn activities(&self) -> impl Future<Output = Result<Vec<PageActivity>, StoreError>> + Send {
        ready(Ok(self.lock().activities()))
    }
    fn state(
        &self,
        brand: &BrandId,
        scope: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send {
        ready(Ok(self.lock().state(brand, scope)))
    }
    fn intent(&self, key: &IdempotencyKey) -> impl Future<Output = Result<Option<Intent>, StoreError>> + Send {
        ready(Ok(self.lock().intent(key)))
    }
    fn allocation(
        &self,
        brand: &BrandId,
    ) -> impl Future<Output = Result<Option<crate::propose::allocation::Allocation>, StoreError>> + Send {
        ready(Ok(self.lock().allocation(brand)))
    }
    fn beat(&self, presence: &Presence, now: Timestamp) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(self.lock().beat(presence, now))
    }
    fn workers(&self) -> impl Future<Output = Result<Vec<WorkerRow>, StoreError>> + Send {
        ready(Ok(self.lock().workers()))
    }
    fn set_budgets(
        &self,
        brand: &BrandId,
        budgets: &Budgets,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.lock().set_budgets(brand, budgets, now);
        ready(Ok(()))
    }
    fn budgets(&self) -> impl Future<Output = Result<Vec<(BrandId, Budgets)>, StoreError>> + Send {
        ready(Ok(self.lock().budgets()))
    }
    fn accounts(&self, brand: Option<&BrandId>) -> impl Future<Output = Result<Vec<Account>, StoreError>> + Send {
        ready(Ok(self.lock().accounts(brand)))
    }
    fn transfers(&self) -> impl Future<Output = Result<Vec<Transfer>, StoreError>> + Send {
        ready(Ok(self.lock().transfers()))
    }
}
