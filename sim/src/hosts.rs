//! The turmoil hosts and the port implementations the worker uses inside them.
//!
//! - `db`: serves a [`SharedMemStore`] whose state lives outside the host, so
//!   it survives anything that happens to the worker;
//! - `ads`: serves the [`AdsWorld`] with Meta's reply shapes, latency,
//!   timeouts, rate limits and acknowledged-but-ignored pauses;
//! - `worker`: runs `dlft_core::worker::Worker` with [`SimStore`], [`SimAds`],
//!   [`SimClock`] and [`SimProbe`]. It can be crashed and bounced.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use dlft_core::act::intent::Intent;
use dlft_core::envelope::budget::{Account, Budgets, Transfer};
use dlft_core::ids::{AdId, BrandId, IdempotencyKey, JobId, WorkerId};
use dlft_core::jobs::reconcile;
use dlft_core::probe::{Probe, Site};
use dlft_core::sense::ads::StatusHint;
use dlft_core::sense::ads::{
    AdNode, AdParents, AdStatus, AdsError, AdsPlatform, BatchPause, InsightRow, InsightsPage, InsightsQuery, LibraryAd,
};
use dlft_core::sense::models::{ModelError, Models, Summary};
use dlft_core::sense::wire::{anthropic, meta};
use dlft_core::store::{
    BatchResult, Boot, Claim, ClaimRequest, Enqueued, IntentFilter, Job, Lease, NewJob, Outcome, PageActivity,
    Presence, ScheduleRow, SharedMemStore, SlotOutcome, Store, StoreError, WorkerRow, WriteBatch,
};
use dlft_core::telemetry::{CostRow, Event};
use dlft_core::time::{Clock, Millis, Timestamp};

use crate::payouts::{BankHost, BankRequest, BankResponse, SimBank};
use crate::rpc::{
    self, ADS_PORT, AdsRequest, DB_PORT, HttpReply, StoreReply, StoreRequest, StoreResponse, WEBHOOK_PORT,
};
use crate::scenario::PlatformSection;
use crate::world::{AdsWorld, draw, page_range};

pub const DB_HOST: &str = "db";
pub const ADS_HOST: &str = "ads";
pub const WORKER_HOST: &str = "worker";

/// The host of worker `i` (0-based): the first keeps the plain name.
pub fn worker_host(i: usize) -> String {
    if i == 0 { WORKER_HOST.to_string() } else { format!("worker-{}", i + 1) }
}

/// Locks a mutex whose data stays consistent across a panic (plain values).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// turmoil's virtual time as the loop's clock: one global time for every host.
#[derive(Copy, Clone, Debug)]
pub struct SimClock {
    pub epoch: Timestamp,
}

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        let elapsed = turmoil::sim_elapsed().expect("SimClock is used inside a turmoil host");
        self.epoch + Millis(elapsed.as_millis() as u64)
    }

    fn sleep(&self, duration: Millis) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(duration.as_std())
    }
}

/// The database host: applies each request to the shared store at its own clock.
pub async fn serve_db(store: SharedMemStore, clock: SimClock) -> turmoil::Result {
    rpc::serve(DB_PORT, move |req: StoreRequest| {
        let store = store.clone();
        async move { Some(apply_store(&store, req, clock.now())) }
    })
    .await
}

pub fn apply_store(store: &SharedMemStore, req: StoreRequest, now: Timestamp) -> StoreResponse {
    let mut s = store.lock();
    Ok(match req {
        StoreRequest::Boot { worker } => StoreReply::Boot(s.boot(&worker, now)),
        StoreRequest::Enqueue { job } => StoreReply::Enqueued(s.enqueue(job, now)),
        StoreRequest::FireSlot { schedule, slot, job } => StoreReply::Slot(s.fire_slot(&schedule, slot, job, now)),
        StoreRequest::Claim { req } => StoreReply::Claims(s.claim(&req, now)?),
        StoreRequest::Write { lease, batch } => StoreReply::Batch(s.write(&lease, batch, now)?),
        StoreRequest::Finish { lease, outcome, costs } => {
            s.finish(&lease, outcome, costs, now)?;
            StoreReply::Done
        }
        StoreRequest::Release { lease } => {
            s.release(&lease, now)?;
            StoreReply::Done
        }
        StoreRequest::Schedules => StoreReply::Schedules(s.schedules()),
        StoreRequest::DiscardUnknownKinds { known } => StoreReply::Discarded(s.discard_unknown_kinds(&known, now)),
        StoreRequest::SetSchedule { brand, name, enabled, reason } => {
            s.set_schedule(&brand, &name, enabled, &reason, now);
            StoreReply::Done
        }
        StoreRequest::SpendLedger { brand, since } => StoreReply::Rows(s.spend_ledger(&brand, since)),
        StoreRequest::SpendSummary { brand, since, fold_before } => {
            StoreReply::Rows(s.spend_summary(&brand, since, fold_before))
        }
        StoreRequest::Job { id } => StoreReply::Job(s.job(id).cloned()),
        StoreRequest::FinishedOfSchedule { brand, schedule, n } => {
            StoreReply::Jobs(s.finished_of_schedule(&brand, &schedule, n))
        }
        StoreRequest::Events { after } => StoreReply::Events(s.events_after(after).to_vec()),
        StoreRequest::Intents => StoreReply::Intents(s.intents()),
        StoreRequest::BrandIntents { brand, filter } => StoreReply::Intents(s.brand_intents(&brand, &filter)),
        StoreRequest::Intent { key } => StoreReply::Intent(s.intent(&key)),
        StoreRequest::Activities => StoreReply::Activities(s.activities()),
        StoreRequest::State { brand, scope } => StoreReply::State(s.state(&brand, &scope)),
        StoreRequest::Allocation { brand } => StoreReply::Allocation(s.allocation(&brand)),
        StoreRequest::Beat { presence } => {
            s.beat(&presence, now)?;
            StoreReply::Done
        }
        StoreRequest::Workers => StoreReply::Workers(s.workers()),
        StoreRequest::SetBudgets { brand, budgets } => {
            s.set_budgets(&brand, &budgets, now);
            StoreReply::Done
        }
        StoreRequest::Budgets => StoreReply::Budgets(s.budgets()),
        StoreRequest::Accounts { brand } => StoreReply::Accounts(s.accounts(brand.as_ref())),
        StoreRequest::Transfers => StoreReply::Transfers(s.transfers()),
    })
}

/// How a worker's calls reach the database and the platform: turmoil's
/// simulated TCP ([`TurmoilWire`]), or the event driver's in-process links
/// (`crate::event::EventWire`). Either way a call is one request and at most
/// one reply within the caller's timeout; what the servers do is the same code.
pub trait Wire: Clone + Send + Sync + 'static {
    fn store(&self, req: StoreRequest) -> impl Future<Output = Result<StoreResponse, rpc::RpcError>> + Send;
    fn ads(&self, req: AdsRequest) -> impl Future<Output = Result<HttpReply, rpc::RpcError>> + Send;
    /// The bank and the payables source (on the platform's host: the same
    /// link, the same partitions).
    fn bank(&self, req: BankRequest) -> impl Future<Output = Result<BankResponse, rpc::RpcError>> + Send;
    /// An insights page: through [`Wire::ads`] and Meta's decoder unless a
    /// wire hands rows over directly (the event driver, where encoding every
    /// page as JSON would dominate long runs; turmoil covers the shapes).
    fn insights(
        &self,
        account: Option<String>,
        query: InsightsQuery,
    ) -> impl Future<Output = Result<InsightsPage, AdsError>> + Send {
        let reply = self.ads(AdsRequest::Insights { account, query });
        async move { meta::decode_insights(&reply_body(reply.await.map_err(ads_error)?)?) }
    }
}

/// A failed exchange as the ads port sees it.
pub fn ads_error(e: rpc::RpcError) -> AdsError {
    match e {
        rpc::RpcError::Timeout | rpc::RpcError::Io(_) => AdsError::Timeout,
        rpc::RpcError::Frame(m) => AdsError::Malformed(m),
    }
}

/// turmoil's simulated TCP: one connection per call.
#[derive(Clone, Debug)]
pub struct TurmoilWire {
    pub timeout: Duration,
}

impl Wire for TurmoilWire {
    fn store(&self, req: StoreRequest) -> impl Future<Output = Result<StoreResponse, rpc::RpcError>> + Send {
        let timeout = self.timeout;
        async move { rpc::call::<_, StoreResponse>(DB_HOST, DB_PORT, &req, timeout).await }
    }
    fn ads(&self, req: AdsRequest) -> impl Future<Output = Result<HttpReply, rpc::RpcError>> + Send {
        let timeout = self.timeout;
        async move { rpc::call::<_, HttpReply>(ADS_HOST, ADS_PORT, &req, timeout).await }
    }
    fn bank(&self, req: BankRequest) -> impl Future<Output = Result<BankResponse, rpc::RpcError>> + Send {
        let timeout = self.timeout;
        async move { rpc::call::<_, BankResponse>(ADS_HOST, rpc::BANK_PORT, &req, timeout).await }
    }
}

/// The Store port over a simulated wire.
#[derive(Clone, Debug)]
pub struct SimStore<W = TurmoilWire> {
    pub wire: W,
}

impl<W: Wire> SimStore<W> {
    async fn call(&self, req: StoreRequest) -> Result<StoreReply, StoreError> {
        match self.wire.store(req).await {
            Ok(reply) => reply,
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    async fn done(&self, req: StoreRequest) -> Result<(), StoreError> {
        match self.call(req).await? {
            StoreReply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(reply: StoreReply) -> StoreError {
    StoreError::Unavailable(format!("unexpected reply {reply:?}"))
}

macro_rules! expect_reply {
    ($self:ident, $req:expr, $variant:ident) => {
        match $self.call($req).await? {
            StoreReply::$variant(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    };
}

impl<W: Wire> Store for SimStore<W> {
    async fn boot(&self, worker: &WorkerId, _now: Timestamp) -> Result<Boot, StoreError> {
        expect_reply!(self, StoreRequest::Boot { worker: worker.clone() }, Boot)
    }
    async fn enqueue(&self, job: NewJob, _now: Timestamp) -> Result<Enqueued, StoreError> {
        expect_reply!(self, StoreRequest::Enqueue { job }, Enqueued)
    }
    async fn fire_slot(
        &self,
        schedule: &str,
        slot: Timestamp,
        job: NewJob,
        _now: Timestamp,
    ) -> Result<SlotOutcome, StoreError> {
        expect_reply!(self, StoreRequest::FireSlot { schedule: schedule.to_string(), slot, job }, Slot)
    }
    async fn schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        expect_reply!(self, StoreRequest::Schedules, Schedules)
    }
    async fn set_schedule(
        &self,
        brand: &BrandId,
        name: &str,
        enabled: bool,
        reason: &str,
        _now: Timestamp,
    ) -> Result<(), StoreError> {
        let req = StoreRequest::SetSchedule {
            brand: brand.clone(),
            name: name.to_string(),
            enabled,
            reason: reason.to_string(),
        };
        self.done(req).await
    }
    async fn discard_unknown_kinds(&self, known: &[String], _now: Timestamp) -> Result<Vec<JobId>, StoreError> {
        expect_reply!(self, StoreRequest::DiscardUnknownKinds { known: known.to_vec() }, Discarded)
    }
    async fn release(&self, lease: &Lease, _now: Timestamp) -> Result<(), StoreError> {
        self.done(StoreRequest::Release { lease: lease.clone() }).await
    }
    async fn claim(&self, req: &ClaimRequest, _now: Timestamp) -> Result<Vec<Claim>, StoreError> {
        expect_reply!(self, StoreRequest::Claim { req: req.clone() }, Claims)
    }
    async fn write(&self, lease: &Lease, batch: WriteBatch, _now: Timestamp) -> Result<BatchResult, StoreError> {
        expect_reply!(self, StoreRequest::Write { lease: lease.clone(), batch }, Batch)
    }
    async fn finish(
        &self,
        lease: &Lease,
        outcome: Outcome,
        costs: Vec<CostRow>,
        _now: Timestamp,
    ) -> Result<(), StoreError> {
        self.done(StoreRequest::Finish { lease: lease.clone(), outcome, costs }).await
    }
    async fn spend_ledger(&self, brand: &BrandId, since: Timestamp) -> Result<Vec<InsightRow>, StoreError> {
        expect_reply!(self, StoreRequest::SpendLedger { brand: brand.clone(), since }, Rows)
    }
    async fn spend_summary(
        &self,
        brand: &BrandId,
        since: Timestamp,
        fold_before: Timestamp,
    ) -> Result<Vec<InsightRow>, StoreError> {
        expect_reply!(self, StoreRequest::SpendSummary { brand: brand.clone(), since, fold_before }, Rows)
    }
    async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        expect_reply!(self, StoreRequest::Job { id }, Job)
    }
    async fn finished_of_schedule(&self, brand: &BrandId, schedule: &str, n: usize) -> Result<Vec<Job>, StoreError> {
        let req = StoreRequest::FinishedOfSchedule { brand: brand.clone(), schedule: schedule.to_string(), n };
        expect_reply!(self, req, Jobs)
    }
    async fn events(&self, after: u64) -> Result<Vec<Event>, StoreError> {
        expect_reply!(self, StoreRequest::Events { after }, Events)
    }
    async fn activities(&self) -> Result<Vec<PageActivity>, StoreError> {
        expect_reply!(self, StoreRequest::Activities, Activities)
    }
    async fn state(&self, brand: &BrandId, scope: &str) -> Result<Vec<(String, String)>, StoreError> {
        expect_reply!(self, StoreRequest::State { brand: brand.clone(), scope: scope.to_string() }, State)
    }
    async fn intents(&self) -> Result<Vec<Intent>, StoreError> {
        expect_reply!(self, StoreRequest::Intents, Intents)
    }
    async fn brand_intents(&self, brand: &BrandId, filter: &IntentFilter) -> Result<Vec<Intent>, StoreError> {
        expect_reply!(self, StoreRequest::BrandIntents { brand: brand.clone(), filter: filter.clone() }, Intents)
    }
    async fn intent(&self, key: &IdempotencyKey) -> Result<Option<Intent>, StoreError> {
        expect_reply!(self, StoreRequest::Intent { key: key.clone() }, Intent)
    }
    async fn allocation(
        &self,
        brand: &BrandId,
    ) -> Result<Option<dlft_core::propose::allocation::Allocation>, StoreError> {
        expect_reply!(self, StoreRequest::Allocation { brand: brand.clone() }, Allocation)
    }
    async fn beat(&self, presence: &Presence, _now: Timestamp) -> Result<(), StoreError> {
        self.done(StoreRequest::Beat { presence: presence.clone() }).await
    }
    async fn workers(&self) -> Result<Vec<WorkerRow>, StoreError> {
        expect_reply!(self, StoreRequest::Workers, Workers)
    }
    async fn set_budgets(&self, brand: &BrandId, budgets: &Budgets, _now: Timestamp) -> Result<(), StoreError> {
        self.done(StoreRequest::SetBudgets { brand: brand.clone(), budgets: budgets.clone() }).await
    }
    async fn budgets(&self) -> Result<Vec<(BrandId, Budgets)>, StoreError> {
        expect_reply!(self, StoreRequest::Budgets, Budgets)
    }
    async fn accounts(&self, brand: Option<&BrandId>) -> Result<Vec<Account>, StoreError> {
        expect_reply!(self, StoreRequest::Accounts { brand: brand.cloned() }, Accounts)
    }
    async fn transfers(&self) -> Result<Vec<Transfer>, StoreError> {
        expect_reply!(self, StoreRequest::Transfers, Transfers)
    }
}

/// The platform's misbehaviour, decided per request from its own stream.
pub struct PlatformState {
    pub world: Arc<Mutex<AdsWorld>>,
    pub cfg: PlatformSection,
    pub rng: ChaCha8Rng,
    /// During a timeout storm, this replaces `timeout_pct`.
    pub storm_timeout_pct: Option<u32>,
    /// Requests left without a reply.
    pub hung: u64,
    pub rate_limited: u64,
    pub acked_without_effect: u64,
    pub partial_batches: u64,
    /// Status read-backs served that were older than the truth.
    pub stale_reads: u64,
    /// The webhook sender, if the scenario has webhooks.
    pub webhooks: Option<WebhookState>,
    /// The bank and the payables, if the scenario has payouts.
    pub bank: Option<BankHost>,
    /// Every brand's shop and claims desk, if the scenario has refunds.
    pub shop: Option<crate::refunds::ShopHost>,
    /// Every brand's support inbox and the text model vendors, if the
    /// scenario has support.
    pub support: Option<crate::inbox::SupportHost>,
}

/// How often the platform's webhook sender looks for news.
pub const WEBHOOK_STEP: Millis = Millis(100);

/// The platform's webhook sender: true webhooks for pauses that took effect,
/// and lies (false confirmations of acks without effect, random claims,
/// duplicates), each delivered after its own delay.
#[derive(Debug)]
pub struct WebhookState {
    pub cfg: crate::scenario::WebhookSection,
    /// Its own stream: scenarios without webhooks draw nothing from it.
    pub rng: ChaCha8Rng,
    queue: BTreeMap<(Timestamp, u64), StatusHint>,
    seq: u64,
    effects_seen: usize,
    /// Ads whose pause was acknowledged without effect, not yet looked at.
    pub acked: Vec<AdId>,
    pub sent: u64,
    pub lies: u64,
    pub duplicates: u64,
    /// Deliveries that got no 200 (worker down, partitioned, store away).
    pub lost: u64,
}

impl WebhookState {
    pub fn new(cfg: crate::scenario::WebhookSection, rng: ChaCha8Rng) -> WebhookState {
        WebhookState {
            cfg,
            rng,
            queue: BTreeMap::new(),
            seq: 0,
            effects_seen: 0,
            acked: Vec::new(),
            sent: 0,
            lies: 0,
            duplicates: 0,
            lost: 0,
        }
    }

    fn push(&mut self, now: Timestamp, hint: StatusHint) {
        let copies = if self.rng.random_range(0..100u32) < self.cfg.duplicate_pct {
            self.duplicates += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = now + Millis(draw(&mut self.rng, self.cfg.delay_ms));
            self.seq += 1;
            self.queue.insert((at, self.seq), hint.clone());
        }
    }

    /// Takes in what happened since the last call; returns the webhooks due at `now`.
    pub fn due(&mut self, world: &AdsWorld, now: Timestamp) -> Vec<StatusHint> {
        let effects: Vec<AdId> = world.effects()[self.effects_seen..].iter().map(|e| e.ad.clone()).collect();
        self.effects_seen += effects.len();
        for ad in effects {
            self.sent += 1;
            self.push(now, StatusHint { ad, status: "PAUSED".into() });
        }
        for ad in std::mem::take(&mut self.acked) {
            if self.rng.random_range(0..100u32) < self.cfg.lie_on_ack_pct {
                self.lies += 1;
                self.push(now, StatusHint { ad, status: "PAUSED".into() });
            }
        }
        if self.rng.random_range(0..60_000u64) < u64::from(self.cfg.false_per_min) * WEBHOOK_STEP.0 {
            let ads: Vec<AdId> = world.specs().map(|s| s.id.clone()).collect();
            let ad = ads[self.rng.random_range(0..ads.len())].clone();
            let status = if self.rng.random_bool(0.5) { "PAUSED" } else { "ACTIVE" };
            self.lies += 1;
            self.push(now, StatusHint { ad, status: status.into() });
        }
        let later = self.queue.split_off(&(now + Millis(1), 0));
        std::mem::replace(&mut self.queue, later).into_values().collect()
    }
}

/// How the platform's webhooks reach worker `i`'s endpoint: `true` if it
/// answered 200.
pub trait WebhookWire: Send + Sync + 'static {
    fn deliver(&self, worker: usize, body: serde_json::Value) -> impl Future<Output = bool> + Send + 'static;
}

/// Webhooks over turmoil's TCP to each worker host's endpoint.
pub struct TurmoilWebhooks;

impl WebhookWire for TurmoilWebhooks {
    fn deliver(&self, worker: usize, body: serde_json::Value) -> impl Future<Output = bool> + Send + 'static {
        let host = worker_host(worker);
        async move {
            let reply = rpc::call::<_, HttpReply>(&host, WEBHOOK_PORT, &body, Duration::from_secs(2)).await;
            matches!(reply, Ok(HttpReply { status: 200, .. }))
        }
    }
}

/// The platform's webhook sender: every [`WEBHOOK_STEP`], delivers what is
/// due to the workers' endpoints in turn (a load balancer), one POST each.
pub async fn emit_webhooks<C: Clock>(
    platform: Arc<Mutex<PlatformState>>,
    clock: C,
    workers: usize,
    wire: impl WebhookWire,
) {
    let mut next = 0usize;
    loop {
        tokio::time::sleep(WEBHOOK_STEP.as_std()).await;
        let due = {
            let mut guard = lock(&platform);
            let p = &mut *guard;
            let world = lock(&p.world);
            match p.webhooks.as_mut() {
                Some(wh) => wh.due(&world, clock.now()),
                None => return,
            }
        };
        for hint in due {
            let worker = next % workers.max(1);
            next += 1;
            let body = meta::encode_status_webhook("act_sim", clock.now().0 / 1000, &[hint]);
            let platform = platform.clone();
            let delivery = wire.deliver(worker, body);
            tokio::spawn(async move {
                if !delivery.await
                    && let Some(wh) = lock(&platform).webhooks.as_mut()
                {
                    wh.lost += 1;
                }
            });
        }
    }
}

/// A worker's webhook endpoint: decodes the body and accepts each hint (a
/// reconcile job). 400 for a body that is not a webhook (nothing enqueued),
/// 503 when the store does not answer (the sender may retry).
pub async fn handle_webhook(store: &impl Store, clock: &impl Clock, body: &serde_json::Value) -> u16 {
    let Ok(hints) = meta::decode_status_webhook(body) else {
        return 400;
    };
    for hint in &hints {
        if reconcile::accept(store, hint, clock.now()).await.is_err() {
            return 503;
        }
    }
    200
}

/// The webhook endpoint on a turmoil worker host.
pub async fn serve_webhooks(store: SimStore, clock: SimClock) -> turmoil::Result {
    rpc::serve(WEBHOOK_PORT, move |body: serde_json::Value| {
        let store = store.clone();
        async move {
            let status = handle_webhook(&store, &clock, &body).await;
            Some(HttpReply { status, headers: BTreeMap::new(), body: serde_json::Value::Null })
        }
    })
    .await
}

/// What the platform does with one request.
enum Fate {
    Serve {
        latency: Millis,
        ack_without_effect: bool,
    },
    RateLimit {
        latency: Millis,
    },
    /// No reply ever; for a pause, maybe after applying it.
    Hang {
        applied: bool,
    },
}

fn decide_fate(p: &mut PlatformState, is_pause: bool) -> Fate {
    let latency = Millis(draw(&mut p.rng, p.cfg.latency_ms));
    let timeout_pct = p.storm_timeout_pct.unwrap_or(p.cfg.timeout_pct);
    let roll = |rng: &mut ChaCha8Rng, pct: u32| rng.random_range(0..100u32) < pct;
    if roll(&mut p.rng, timeout_pct) {
        let applied = is_pause && roll(&mut p.rng, p.cfg.timeout_applied_pct);
        p.hung += 1;
        return Fate::Hang { applied };
    }
    if roll(&mut p.rng, p.cfg.rate_limit_pct) {
        p.rate_limited += 1;
        return Fate::RateLimit { latency };
    }
    // Counted where the pause (or each item of a batch) is answered.
    let ack_without_effect = is_pause && roll(&mut p.rng, p.cfg.ack_without_effect_pct);
    Fate::Serve { latency, ack_without_effect }
}

/// What the platform does with one item of a batch pause.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ItemFate {
    /// Paused, and reported so.
    Pause,
    /// Reported paused; not paused.
    AckWithoutEffect,
    /// Paused, but the item did not complete in time: `null`.
    NullApplied,
    /// Not paused: `null`.
    NullNotApplied,
    /// Not paused: a transient error (code 2).
    Transient,
}

/// The fates of a batch's items: whole unless the platform carries this
/// batch out only in part.
fn batch_fates(p: &mut PlatformState, n: usize, ack_without_effect: bool) -> Vec<ItemFate> {
    let whole = if ack_without_effect { ItemFate::AckWithoutEffect } else { ItemFate::Pause };
    if p.rng.random_range(0..100u32) >= p.cfg.partial_batch_pct {
        return vec![whole; n];
    }
    p.partial_batches += 1;
    let ack_pct = p.cfg.ack_without_effect_pct;
    (0..n)
        .map(|_| match p.rng.random_range(0..4u32) {
            0 => ItemFate::Pause,
            1 => ItemFate::NullApplied,
            2 => ItemFate::NullNotApplied,
            _ if p.rng.random_range(0..100u32) < ack_pct => ItemFate::AckWithoutEffect,
            _ => ItemFate::Transient,
        })
        .collect()
}

/// Carries out a batch pause item by item and builds Meta's reply array.
pub fn handle_pause_batch(
    world: &mut AdsWorld,
    items: &[(AdId, IdempotencyKey)],
    now: Timestamp,
    fates: &[ItemFate],
) -> HttpReply {
    let item = |code: u16, body: serde_json::Value| {
        serde_json::to_value(meta::BatchReply { code, headers: vec![], body: body.to_string() }).expect("serializes")
    };
    let replies = items
        .iter()
        .zip(fates)
        .map(|((ad, key), fate)| {
            if world.status(ad).is_none() {
                return item(400, graph_error(400, 100, "(#100) object does not exist").body);
            }
            if matches!(fate, ItemFate::Pause | ItemFate::NullApplied) {
                world.pause(ad, key, now);
            }
            match fate {
                ItemFate::Pause | ItemFate::AckWithoutEffect => item(200, serde_json::json!({"success": true})),
                ItemFate::NullApplied | ItemFate::NullNotApplied => serde_json::Value::Null,
                ItemFate::Transient => item(
                    500,
                    serde_json::json!({"error": {"message": "Service temporarily unavailable", "type": "OAuthException",
                                                 "code": 2, "is_transient": true, "fbtrace_id": "sim"}}),
                ),
            }
        })
        .collect();
    ok(serde_json::Value::Array(replies))
}

fn ok(body: serde_json::Value) -> HttpReply {
    HttpReply { status: 200, headers: BTreeMap::new(), body }
}

fn graph_error(status: u16, code: i64, message: &str) -> HttpReply {
    let body = serde_json::json!({"error": {"message": message, "type": "OAuthException", "code": code,
                                             "is_transient": false, "fbtrace_id": "sim"}});
    HttpReply { status, headers: BTreeMap::new(), body }
}

/// Applies a served request to the world and builds Meta's reply.
pub fn handle_ads(world: &mut AdsWorld, req: &AdsRequest, now: Timestamp, ack_without_effect: bool) -> HttpReply {
    handle_ads_stale(world, req, now, ack_without_effect, Millis(0))
}

/// As [`handle_ads`], with status read-backs `stale` behind the truth.
pub fn handle_ads_stale(
    world: &mut AdsWorld,
    req: &AdsRequest,
    now: Timestamp,
    ack_without_effect: bool,
    stale: Millis,
) -> HttpReply {
    world.advance_to(now);
    match req {
        AdsRequest::Insights { account, query } => {
            if world.refuses(account.as_deref()) {
                return graph_error(400, 190, REVOKED);
            }
            let rows = world.insights_of(account.as_deref(), query.since, query.until, now);
            let Some((offset, end)) = page_range(rows.len(), query.after.as_deref(), query.limit) else {
                return graph_error(400, 100, "(#100) Invalid cursor");
            };
            let data: Vec<_> = rows[offset..end].iter().map(meta::encode_record).collect();
            let paging = meta::Paging {
                cursors: Some(meta::Cursors { before: format!("o{offset}"), after: format!("o{end}") }),
                next: (end < rows.len()).then(|| format!("https://graph.facebook.com/v25.0/insights?after=o{end}")),
            };
            let resp = meta::InsightsResponse { data, paging: Some(paging) };
            ok(serde_json::to_value(resp).expect("serializes"))
        }
        AdsRequest::Pause { ad, key } => {
            if world.status(ad).is_none() {
                return graph_error(400, 100, "(#100) Unsupported post request: object does not exist");
            }
            if !ack_without_effect {
                world.pause(ad, key, now);
            }
            ok(serde_json::json!({"success": true}))
        }
        AdsRequest::PauseBatch { items } => {
            let fate = if ack_without_effect { ItemFate::AckWithoutEffect } else { ItemFate::Pause };
            handle_pause_batch(world, items, now, &vec![fate; items.len()])
        }
        AdsRequest::Library { page } => match world.library(page) {
            None => graph_error(400, 100, "(#100) Invalid page id"),
            Some(ads) => {
                let data: Vec<_> = ads
                    .iter()
                    .map(|a| meta::ArchiveRecord {
                        id: a.id.clone(),
                        page_id: page.clone(),
                        ad_delivery_start_time_ms: a.started_at.0.to_string(),
                    })
                    .collect();
                ok(serde_json::json!({"data": data, "paging": {}}))
            }
        },
        AdsRequest::Summarize { call_id, page, ads } => {
            world.bill(call_id, page, now);
            let label = match ads.len() {
                0 => "quiet",
                1..=2 => "steady",
                _ => "aggressive",
            };
            ok(serde_json::json!({
                "content": [{"type": "tool_use", "name": "summarize", "input": {"label": label}}],
                "usage": {"input_tokens": 40 + 20 * ads.len(), "output_tokens": 8},
                "stop_reason": "tool_use"
            }))
        }
        AdsRequest::Status { ad } => match world.status_at(ad, now - stale) {
            None => graph_error(400, 100, "(#100) object does not exist"),
            Some(status) => {
                let effective = match &status {
                    AdStatus::Active => "ACTIVE",
                    AdStatus::Paused => "PAUSED",
                    AdStatus::Other(s) => s.as_str(),
                };
                let own = if status == AdStatus::Paused { "PAUSED" } else { "ACTIVE" };
                ok(serde_json::json!({"id": ad.as_str(), "status": own, "effective_status": effective}))
            }
        },
        AdsRequest::Parents { ad } => match world.parents(ad) {
            None => graph_error(400, 100, "(#100) object does not exist"),
            Some(p) => ok(serde_json::json!({"id": ad.as_str(), "adset_id": p.adset, "campaign_id": p.campaign})),
        },
        AdsRequest::SetNode { node, paused, key } => {
            if !world.set_node(node, *paused, key, now) {
                return graph_error(400, 100, "(#100) Unsupported post request: object does not exist");
            }
            ok(serde_json::json!({"success": true}))
        }
        AdsRequest::NodeStatus { node } => match world.node_status(node) {
            None => graph_error(400, 100, "(#100) object does not exist"),
            Some((own, effective)) => ok(serde_json::json!({
                "id": node.id, "status": if own { "PAUSED" } else { "ACTIVE" }, "effective_status": effective
            })),
        },
    }
}

/// How long a hung request holds its connection before the server drops it.
const HANG_FOR: Duration = Duration::from_secs(120);

/// The ads host: serves the platform and, if the scenario has webhooks,
/// sends them to the `workers` workers' endpoints.
pub async fn serve_ads(platform: Arc<Mutex<PlatformState>>, clock: SimClock, workers: usize) -> turmoil::Result {
    if lock(&platform).webhooks.is_some() {
        tokio::spawn(emit_webhooks(platform.clone(), clock, workers, TurmoilWebhooks));
    }
    if lock(&platform).bank.is_some() || lock(&platform).shop.is_some() || lock(&platform).support.is_some() {
        let bank = platform.clone();
        tokio::spawn(async move {
            let served = rpc::serve(rpc::BANK_PORT, move |req: BankRequest| {
                crate::payouts::serve_bank_request(bank.clone(), clock, req)
            });
            let _ = served.await.map_err(|e| e.to_string());
        });
    }
    rpc::serve(ADS_PORT, move |req: AdsRequest| serve_ads_request(platform.clone(), clock, req)).await
}

/// Graph error 17 (user request limit), with its usage header.
fn rate_limited() -> HttpReply {
    let body = serde_json::to_value(meta::ErrorEnvelope::user_request_limit("sim")).expect("serializes");
    let usage = r#"{"act_1":[{"type":"ads_management","call_count":100,"total_cputime":40,"total_time":60,"estimated_time_to_regain_access":0}]}"#;
    let headers = BTreeMap::from([("x-business-use-case-usage".to_string(), usage.to_string())]);
    HttpReply { status: 400, headers, body }
}

/// Graph error 190's message for a token whose session was invalidated.
const REVOKED: &str = "Error validating access token: The session has been invalidated.";

/// An insights request that reached the platform, answered with rows rather
/// than Meta's JSON: the same fates as [`serve_ads_request`] (`None`: no reply).
pub async fn serve_insights_direct<C: Clock>(
    platform: Arc<Mutex<PlatformState>>,
    clock: C,
    account: Option<String>,
    query: InsightsQuery,
) -> Option<Result<InsightsPage, AdsError>> {
    let fate = decide_fate(&mut lock(&platform), false);
    match fate {
        Fate::Hang { .. } => {
            tokio::time::sleep(HANG_FOR).await;
            None
        }
        Fate::RateLimit { latency } => {
            tokio::time::sleep(latency.as_std()).await;
            Some(Err(reply_body(rate_limited()).expect_err("a rate limit is a 400")))
        }
        Fate::Serve { latency, .. } => {
            tokio::time::sleep(latency.as_std()).await;
            let p = lock(&platform);
            Some(insights_page(&mut lock(&p.world), account.as_deref(), &query, clock.now()))
        }
    }
}

/// One page of insights rows straight from the world (no JSON).
pub fn insights_page(
    world: &mut AdsWorld,
    account: Option<&str>,
    query: &InsightsQuery,
    now: Timestamp,
) -> Result<InsightsPage, AdsError> {
    if world.refuses(account) {
        return Err(AdsError::Permanent { code: 190, message: REVOKED.into() });
    }
    world.advance_to(now);
    let rows = world.insights_of(account, query.since, query.until, now);
    let Some((start, end)) = page_range(rows.len(), query.after.as_deref(), query.limit) else {
        return Err(AdsError::Permanent { code: 100, message: "(#100) Invalid cursor".into() });
    };
    let next = (end < rows.len()).then(|| format!("o{end}"));
    Ok(InsightsPage { rows: rows[start..end].to_vec(), next })
}

/// What the platform does with one request that reached it, on any driver:
/// its fate (served after a latency, rate-limited, or never answered, maybe
/// after taking effect), drawn from the platform's own stream. `None`: no reply.
pub async fn serve_ads_request<C: Clock>(
    platform: Arc<Mutex<PlatformState>>,
    clock: C,
    req: AdsRequest,
) -> Option<HttpReply> {
    // Calls with an effect may take effect even when the reply is lost.
    let has_effect = matches!(
        req,
        AdsRequest::Pause { .. }
            | AdsRequest::PauseBatch { .. }
            | AdsRequest::Summarize { .. }
            | AdsRequest::SetNode { .. }
    );
    let fate = decide_fate(&mut lock(&platform), has_effect);
    match fate {
        Fate::Hang { applied } => {
            if applied {
                let mut p = lock(&platform);
                if let AdsRequest::PauseBatch { items } = &req {
                    // A batch that times out may have done any part of its work.
                    let fates: Vec<ItemFate> = (0..items.len())
                        .map(|_| if p.rng.random_bool(0.5) { ItemFate::Pause } else { ItemFate::NullNotApplied })
                        .collect();
                    handle_pause_batch(&mut lock(&p.world), items, clock.now(), &fates);
                } else {
                    handle_ads(&mut lock(&p.world), &req, clock.now(), false);
                }
            }
            tokio::time::sleep(HANG_FOR).await;
            None
        }
        Fate::RateLimit { latency } => {
            tokio::time::sleep(latency.as_std()).await;
            Some(rate_limited())
        }
        Fate::Serve { latency, ack_without_effect } => {
            tokio::time::sleep(latency.as_std()).await;
            let mut p = lock(&platform);
            if let AdsRequest::PauseBatch { items } = &req {
                let fates = batch_fates(&mut p, items.len(), ack_without_effect);
                p.acked_without_effect += fates.iter().filter(|f| **f == ItemFate::AckWithoutEffect).count() as u64;
                if let Some(wh) = p.webhooks.as_mut() {
                    let acked = items.iter().zip(&fates).filter(|(_, f)| **f == ItemFate::AckWithoutEffect);
                    wh.acked.extend(acked.map(|((ad, _), _)| ad.clone()));
                }
                return Some(handle_pause_batch(&mut lock(&p.world), items, clock.now(), &fates));
            }
            if matches!(req, AdsRequest::Pause { .. }) {
                p.acked_without_effect += u64::from(ack_without_effect);
            }
            if let (AdsRequest::Pause { ad, .. }, true, Some(wh)) = (&req, ack_without_effect, p.webhooks.as_mut()) {
                wh.acked.push(ad.clone());
            }
            let stale = Millis(p.cfg.stale_read_ms);
            let now = clock.now();
            if let AdsRequest::Status { ad } = &req
                && stale.0 > 0
            {
                let behind = {
                    let mut world = lock(&p.world);
                    world.advance_to(now);
                    world.status_at(ad, now - stale) != world.status_at(ad, now)
                };
                p.stale_reads += u64::from(behind);
            }
            Some(handle_ads_stale(&mut lock(&p.world), &req, now, ack_without_effect, stale))
        }
    }
}

/// The ads platform port over a simulated wire, decoding Meta's shapes.
#[derive(Clone, Debug)]
pub struct SimAds<W = TurmoilWire> {
    pub wire: W,
    /// The brand's ad account (`None`: the world's one account).
    pub account: Option<String>,
}

/// Each brand of the scenario on its own account over `wire` (empty for a
/// one-brand run, which runs on the worker's own port).
pub fn tenants<W: Wire>(
    scn: &crate::scenario::Scenario,
    wire: &W,
) -> BTreeMap<BrandId, dlft_core::worker::Tenant<SimAds<W>, SimBank<W>>> {
    scn.brand_accounts()
        .into_iter()
        .map(|id| {
            let brand = BrandId::new(id.clone());
            let ads = SimAds { wire: wire.clone(), account: Some(id) };
            let mut loop_cfg = scn.loop_config();
            if let Some(p) = loop_cfg.payouts.as_mut() {
                p.from_account = crate::payouts::from_account(&brand);
            }
            let bank =
                SimBank::with_tracker(wire.clone(), brand.clone(), scn.has_tracker()).mirroring(scn.mirrored(&brand));
            (brand, dlft_core::worker::Tenant { ads, loop_cfg, bank })
        })
        .collect()
}

impl<W: Wire> SimAds<W> {
    async fn call(&self, req: AdsRequest) -> Result<serde_json::Value, AdsError> {
        reply_body(self.wire.ads(req).await.map_err(ads_error)?)
    }
}

/// The body of a 200 reply, or the classified Graph error.
pub fn reply_body(reply: HttpReply) -> Result<serde_json::Value, AdsError> {
    if reply.status == 200 {
        return Ok(reply.body);
    }
    let usage = reply.headers.get("x-business-use-case-usage").map(String::as_str);
    Err(meta::classify_error(reply.status, &reply.body, usage))
}

impl<W: Wire> AdsPlatform for SimAds<W> {
    fn insights(&self, query: &InsightsQuery) -> impl Future<Output = Result<InsightsPage, AdsError>> + Send {
        self.wire.insights(self.account.clone(), query.clone())
    }
    fn pause(&self, ad: &AdId, key: &IdempotencyKey) -> impl Future<Output = Result<(), AdsError>> + Send {
        let req = AdsRequest::Pause { ad: ad.clone(), key: key.clone() };
        async move { meta::decode_pause(&self.call(req).await?) }
    }
    fn status(&self, ad: &AdId) -> impl Future<Output = Result<AdStatus, AdsError>> + Send {
        let req = AdsRequest::Status { ad: ad.clone() };
        async move { meta::decode_status(&self.call(req).await?) }
    }
    fn pause_batch(&self, items: &[(AdId, IdempotencyKey)]) -> impl Future<Output = BatchPause> + Send {
        let req = AdsRequest::PauseBatch { items: items.to_vec() };
        let n = items.len();
        async move { meta::decode_pause_batch(&self.call(req).await?, n) }
    }
    fn library(&self, page: &str) -> impl Future<Output = Result<Vec<LibraryAd>, AdsError>> + Send {
        let req = AdsRequest::Library { page: page.to_string() };
        async move { meta::decode_archive(&self.call(req).await?) }
    }
    fn parents(&self, ad: &AdId) -> impl Future<Output = Result<AdParents, AdsError>> + Send {
        let req = AdsRequest::Parents { ad: ad.clone() };
        async move { meta::decode_parents(&self.call(req).await?) }
    }
    fn set_node(
        &self,
        node: &AdNode,
        paused: bool,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<(), AdsError>> + Send {
        let req = AdsRequest::SetNode { node: node.clone(), paused, key: key.clone() };
        async move { meta::decode_pause(&self.call(req).await?) }
    }
    fn node_status(&self, node: &AdNode) -> impl Future<Output = Result<AdStatus, AdsError>> + Send {
        let req = AdsRequest::NodeStatus { node: node.clone() };
        async move { meta::decode_status(&self.call(req).await?) }
    }
}

impl<W: Wire> Models for SimAds<W> {
    async fn summarize(&self, call_id: &str, page: &str, ads: &[LibraryAd]) -> Result<Summary, ModelError> {
        let req = AdsRequest::Summarize { call_id: call_id.into(), page: page.into(), ads: ads.to_vec() };
        let reply = self.wire.ads(req).await.map_err(|_| ModelError::Timeout)?;
        model_reply(reply)
    }
}

/// A model vendor reply: the summary, or the classified error.
pub fn model_reply(reply: HttpReply) -> Result<Summary, ModelError> {
    if reply.status == 200 {
        return anthropic::decode_summary(&reply.body);
    }
    if reply.status == 400 && reply.body.pointer("/error/code") == Some(&serde_json::json!(17)) {
        return Err(ModelError::RateLimited { retry_after: Millis(5_000) });
    }
    Err(anthropic::classify_error(reply.status, &reply.body))
}

/// Crash plan and bookkeeping shared by the probe (inside the worker) and the
/// runner (outside the simulation).
#[derive(Debug, Default)]
pub struct ProbeState {
    /// `(site, n)`: crash the worker the n-th time it reaches `site`.
    pub armed: Vec<(Site, u32)>,
    pub hits: BTreeMap<Site, u32>,
    /// Set by the probe: which worker reached which site. The runner crashes
    /// that worker and clears it.
    pub crash_requested: Option<(Site, usize)>,
    /// While false (a partition is on, or the worker is recovering), sites
    /// are counted but nothing fires.
    pub enabled: bool,
    /// A deterministic crash: every time the worker reaches this site for
    /// this entity, it dies (a poison input).
    pub crash_loop: Option<(Site, String)>,
    pub loop_crashes: u32,
    /// Woken when a crash is requested (the event driver waits on it; turmoil's
    /// runner looks after every step).
    pub wake: Option<Arc<tokio::sync::Notify>>,
}

#[derive(Clone, Debug)]
pub struct SimProbe {
    pub state: Arc<Mutex<ProbeState>>,
    /// Which worker this probe is in.
    pub worker: usize,
}

impl Probe for SimProbe {
    fn reached(&self, site: Site, entity: &str) -> impl Future<Output = ()> + Send {
        let fire = {
            let mut st = lock(&self.state);
            let poisoned = st.crash_loop.as_ref().is_some_and(|(s, e)| *s == site && e == entity);
            let n = {
                let hits = st.hits.entry(site).or_insert(0);
                *hits += 1;
                *hits
            };
            let pos = st.armed.iter().position(|&(s, k)| s == site && k <= n);
            if poisoned && st.crash_requested.is_none() {
                st.loop_crashes += 1;
                st.crash_requested = Some((site, self.worker));
                true
            } else {
                match pos {
                    Some(i) if st.enabled && st.crash_requested.is_none() => {
                        st.armed.remove(i);
                        st.crash_requested = Some((site, self.worker));
                        true
                    }
                    _ => false,
                }
            }
        };
        if fire && let Some(wake) = &lock(&self.state).wake {
            wake.notify_one();
        }
        async move {
            if fire {
                // The container dies here: the runner crashes the host before
                // this task is polled again.
                std::future::pending::<()>().await;
            }
        }
    }
}
