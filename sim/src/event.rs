//! The event driver with faults: the same loop, world, platform and fault
//! plan as on turmoil, in one process on virtual time that jumps to the next
//! timer when every task waits (a paused current-thread tokio runtime).
//!
//! What stands in for the network and the containers:
//! - every call is a message each way over a link worker↔db or
//!   worker↔platform, with a latency drawn from the scenario's
//!   `net_latency_ms` (its own stream); the server's side runs as its own
//!   task, so a request that arrived is carried out even if its caller has
//!   died or given up, and the caller gives up after `rpc_timeout_ms`;
//! - a partition cuts a link one way or both: a request sent into a cut is
//!   lost (the call times out, nothing happened); a reply sent into a cut
//!   is lost (the call times out, it did happen);
//! - a container is the set of tasks a worker runs (its loop and the webhook
//!   requests it is handling): a container loss aborts them all at once,
//!   dropping the worker's memory; the store and the world live on. A
//!   restart boots a new worker with the same id;
//! - the platform's own misbehaviour (timeouts, some applied anyway, rate
//!   limits, acks without effect, partial batches, stale read-backs, timeout
//!   storms, lying webhooks) is `hosts::serve_ads_request` and
//!   `hosts::emit_webhooks`, the very code the turmoil hosts run.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};

use dlft_core::jobs::Ports;
use dlft_core::sense::ads::{AdsError, InsightsPage, InsightsQuery};
use dlft_core::store::SharedMemStore;
use dlft_core::time::{Clock, Millis};
use dlft_core::worker::Worker;

use crate::conductor::{Conductor, Harness};
use crate::faults::{Direction, FaultPlan, Link};
use crate::hosts::{
    PlatformState, SimAds, SimProbe, SimStore, WebhookWire, Wire, ads_error, apply_store, emit_webhooks,
    handle_webhook, lock, serve_ads_request, serve_insights_direct,
};
use crate::inproc::{VirtualClock, virtual_runtime};
use crate::rpc::{AdsRequest, HttpReply, RpcError, StoreRequest, StoreResponse};
use crate::run::{RunOptions, SeedReport, rng_for, stream, world_for};
use crate::scenario::{Range, Scenario};

/// How long the platform waits for a worker's webhook endpoint (as on turmoil).
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(2);

/// The links between the workers and their peers, and the workers' containers.
pub struct Net {
    state: Mutex<NetState>,
}

struct NetState {
    rng: ChaCha8Rng,
    latency: Range,
    /// Cuts in force per (worker, link): worker → peer, and peer → worker.
    outbound_cuts: BTreeMap<(usize, Link), u32>,
    inbound_cuts: BTreeMap<(usize, Link), u32>,
    up: Vec<bool>,
    /// The tasks of each worker's container.
    tasks: Vec<Vec<AbortHandle>>,
}

impl Net {
    fn new(scn: &Scenario, seed: u64) -> Net {
        let workers = scn.run.workers as usize;
        Net {
            state: Mutex::new(NetState {
                rng: rng_for(seed, stream::NET),
                latency: scn.run.net_latency_ms,
                outbound_cuts: BTreeMap::new(),
                inbound_cuts: BTreeMap::new(),
                up: vec![false; workers],
                tasks: vec![Vec::new(); workers],
            }),
        }
    }

    fn latency(s: &mut NetState) -> Duration {
        let Range { lo, hi } = s.latency;
        Duration::from_millis(s.rng.random_range(lo..=hi))
    }

    /// A message from `worker` to its peer on `link`: its latency, or `None` if it is lost.
    fn outbound(&self, worker: usize, link: Link) -> Option<Duration> {
        let mut s = lock(&self.state);
        let cut = s.outbound_cuts.get(&(worker, link)).is_some_and(|&n| n > 0);
        (!cut).then(|| Net::latency(&mut s))
    }

    /// A message from the peer on `link` to `worker`: its latency, or `None`
    /// if it is lost (the link is cut that way, or the worker's container is down).
    fn inbound(&self, worker: usize, link: Link) -> Option<Duration> {
        let mut s = lock(&self.state);
        let cut = s.inbound_cuts.get(&(worker, link)).is_some_and(|&n| n > 0);
        (!cut && s.up[worker]).then(|| Net::latency(&mut s))
    }

    fn cut(&self, worker: usize, link: Link, direction: Direction, by: i32) {
        let mut s = lock(&self.state);
        let bump = |m: &mut BTreeMap<(usize, Link), u32>| {
            let n = m.entry((worker, link)).or_insert(0);
            *n = n.checked_add_signed(by).expect("a repair follows its cut");
        };
        if matches!(direction, Direction::Both | Direction::Outbound) {
            bump(&mut s.outbound_cuts);
        }
        if matches!(direction, Direction::Both | Direction::Inbound) {
            bump(&mut s.inbound_cuts);
        }
    }

    /// Runs `task` in `worker`'s container; `None` if the container is down.
    fn spawn_in<T: Send + 'static>(
        &self,
        worker: usize,
        task: impl Future<Output = T> + Send + 'static,
    ) -> Option<JoinHandle<T>> {
        let mut s = lock(&self.state);
        if !s.up[worker] {
            return None;
        }
        let handle = tokio::spawn(task);
        let tasks = &mut s.tasks[worker];
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle.abort_handle());
        Some(handle)
    }

    fn crash(&self, worker: usize) {
        let mut s = lock(&self.state);
        s.up[worker] = false;
        for task in s.tasks[worker].drain(..) {
            task.abort();
        }
    }
}

/// One worker's calls over the in-process links.
#[derive(Clone)]
pub struct EventWire {
    worker: usize,
    net: Arc<Net>,
    store: SharedMemStore,
    platform: Arc<Mutex<PlatformState>>,
    clock: VirtualClock,
    timeout: Duration,
}

impl EventWire {
    /// One request and at most one reply within the timeout. The server's
    /// side is its own task: it carries on whatever happens to the caller.
    async fn exchange<R: Send + 'static>(
        &self,
        link: Link,
        serve: impl Future<Output = Option<R>> + Send + 'static,
    ) -> Result<R, RpcError> {
        let net = self.net.clone();
        let worker = self.worker;
        let reply = match net.outbound(worker, link) {
            None => None,
            Some(there) => {
                let server = tokio::spawn(async move {
                    tokio::time::sleep(there).await;
                    let reply = serve.await?;
                    let back = net.inbound(worker, link)?;
                    tokio::time::sleep(back).await;
                    Some(reply)
                });
                Some(server)
            }
        };
        // A lost request or reply looks like silence until the timeout.
        let wait = async move {
            if let Some(server) = reply
                && let Ok(Some(reply)) = server.await
            {
                return reply;
            }
            std::future::pending().await
        };
        tokio::time::timeout(self.timeout, wait).await.map_err(|_| RpcError::Timeout)
    }
}

impl Wire for EventWire {
    fn store(&self, req: StoreRequest) -> impl Future<Output = Result<StoreResponse, RpcError>> + Send {
        let (net, store, clock, worker, timeout) =
            (self.net.clone(), self.store.clone(), self.clock, self.worker, self.timeout);
        // The database applies a request the instant it is sent (its clock,
        // its order): it cannot be lost with its sender once on its way, and
        // it costs one timer per call instead of a task and three timers. A
        // call that loses its request or its reply waits out its timeout.
        async move {
            let sent = clock.now();
            let Some(there) = net.outbound(worker, Link::Db) else {
                tokio::time::sleep(timeout).await;
                return Err(RpcError::Timeout);
            };
            let reply = apply_store(&store, req, sent);
            let back = net.inbound(worker, Link::Db);
            match back {
                Some(back) => {
                    let rtt = there + back;
                    if !rtt.is_zero() {
                        tokio::time::sleep(rtt).await;
                    }
                    Ok(reply)
                }
                None => {
                    tokio::time::sleep(timeout).await;
                    Err(RpcError::Timeout)
                }
            }
        }
    }
    fn ads(&self, req: AdsRequest) -> impl Future<Output = Result<HttpReply, RpcError>> + Send {
        self.exchange(Link::Ads, serve_ads_request(self.platform.clone(), self.clock, req))
    }
    fn bank(
        &self,
        req: crate::payouts::BankRequest,
    ) -> impl Future<Output = Result<crate::payouts::BankResponse, RpcError>> + Send {
        self.exchange(Link::Ads, crate::payouts::serve_bank_request(self.platform.clone(), self.clock, req))
    }
    fn insights(
        &self,
        account: Option<String>,
        query: InsightsQuery,
    ) -> impl Future<Output = Result<InsightsPage, AdsError>> + Send {
        let served = self.exchange(Link::Ads, serve_insights_direct(self.platform.clone(), self.clock, account, query));
        async move { served.await.map_err(ads_error)? }
    }
}

/// The platform's webhooks to the workers' endpoints, over the ads links.
struct EventWebhooks {
    net: Arc<Net>,
    wires: Vec<EventWire>,
    clock: VirtualClock,
}

impl WebhookWire for EventWebhooks {
    fn deliver(&self, worker: usize, body: serde_json::Value) -> impl Future<Output = bool> + Send + 'static {
        let net = self.net.clone();
        let store = SimStore { wire: self.wires[worker].clone() };
        let clock = self.clock;
        async move {
            let Some(there) = net.inbound(worker, Link::Ads) else {
                return false;
            };
            // The endpoint runs in the worker's container and dies with it.
            let endpoint = net.spawn_in(worker, async move {
                tokio::time::sleep(there).await;
                handle_webhook(&store, &clock, &body).await
            });
            let Some(endpoint) = endpoint else { return false };
            let status = tokio::time::timeout(WEBHOOK_TIMEOUT, endpoint).await;
            matches!(status, Ok(Ok(200))) && net.outbound(worker, Link::Ads).is_some()
        }
    }
}

/// The plan's harness on the event driver: containers are task sets, links are flags.
struct EventHarness<F> {
    net: Arc<Net>,
    boot: F,
}

impl<F: FnMut(usize) -> Box<dyn Future<Output = ()> + Send + Unpin>> Harness for EventHarness<F> {
    fn crash(&mut self, worker: usize) {
        self.net.crash(worker);
    }
    fn restart(&mut self, worker: usize) {
        lock(&self.net.state).up[worker] = true;
        let run = (self.boot)(worker);
        self.net.spawn_in(worker, run).expect("the container is up");
    }
    fn cut(&mut self, worker: usize, link: Link, direction: Direction) {
        self.net.cut(worker, link, direction, 1);
    }
    fn repair(&mut self, worker: usize, link: Link, direction: Direction) {
        self.net.cut(worker, link, direction, -1);
    }
}

/// Runs one seed on the event driver with `plan`, and checks it.
pub fn run_event(scn: &Scenario, seed: u64, opts: &RunOptions, plan: FaultPlan) -> SeedReport {
    virtual_runtime().block_on(async {
        #[allow(clippy::disallowed_methods)] // tokio's paused clock is virtual time
        let start = tokio::time::Instant::now();
        let epoch = scn.start();
        let clock = VirtualClock::new(epoch);
        let shared = world_for(scn, seed, &plan);
        let wake = Arc::new(Notify::new());
        lock(&shared.probe).wake = Some(wake.clone());
        let net = Arc::new(Net::new(scn, seed));
        let workers = scn.run.workers as usize;
        let timeout = Duration::from_millis(scn.control.rpc_timeout_ms);
        let wires: Vec<EventWire> = (0..workers)
            .map(|worker| EventWire {
                worker,
                net: net.clone(),
                store: shared.store.clone(),
                platform: shared.platform.clone(),
                clock,
                timeout,
            })
            .collect();
        if scn.webhooks.is_some() {
            let sender = EventWebhooks { net: net.clone(), wires: wires.clone(), clock };
            tokio::spawn(emit_webhooks(shared.platform.clone(), clock, workers, sender));
        }
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let loop_cfg = scn.loop_config();
        let mut boots = vec![0u64; workers];
        let probe = shared.probe.clone();
        let worker_errors = errors.clone();
        let boot = move |i: usize| -> Box<dyn Future<Output = ()> + Send + Unpin> {
            let wire = wires[i].clone();
            let mut worker = Worker {
                ports: Ports {
                    store: SimStore { wire: wire.clone() },
                    ads: SimAds { wire: wire.clone(), account: None },
                    clock,
                    probe: SimProbe { state: probe.clone(), worker: i },
                    bank: crate::payouts::SimBank::with_tracker(wire.clone(), Default::default(), scn.has_tracker())
                        .mirroring(scn.mirrored(&Default::default())),
                },
                cfg: scn.worker_config_for(i, opts.sabotage),
                loop_cfg: loop_cfg.clone(),
                tenants: crate::hosts::tenants(scn, &wire),
                rng: rng_for(seed, stream::WORKER_BASE + 1_000 * i as u64 + boots[i]),
                stop: Default::default(),
                pulse: Default::default(),
            };
            boots[i] += 1;
            let errors = worker_errors.clone();
            Box::new(Box::pin(async move {
                if let Err(e) = worker.run(None).await {
                    lock(&errors).push(format!("worker-{} stopped: {e}", i + 1));
                }
            }))
        };
        let mut harness = EventHarness { net, boot };
        for i in 0..workers {
            harness.restart(i);
        }
        let mut c = Conductor::new(scn, &plan, shared);
        let end_ms = scn.run.duration_s * 1000;
        let ms = || clock.now().0 - epoch.0;
        loop {
            let now = ms();
            if now >= end_ms {
                break;
            }
            c.run_due(now, &mut harness);
            c.arm_probes(now);
            let mut wake_at = end_ms;
            if let Some(t) = c.next_at() {
                wake_at = wake_at.min(t);
            }
            if c.recovering() {
                // MTTR is read as finely as turmoil's tick reads it.
                wake_at = wake_at.min(now + scn.run.tick_ms);
            }
            if now < c.fault_window_end() {
                wake_at = wake_at.min(c.fault_window_end());
            }
            tokio::select! {
                biased;
                () = wake.notified() => {}
                () = tokio::time::sleep_until(start + Millis(wake_at).as_std()) => {}
            }
            c.after_step(ms(), &mut harness);
        }
        let error = lock(&errors).first().cloned();
        c.report(scn, seed, opts, plan, error)
    })
}
