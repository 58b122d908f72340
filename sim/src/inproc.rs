//! The ads platform port served in-process from the world model, with no
//! network and no faults: for tests and for drivers that jump virtual time.
//! Replies go through the same Meta shapes and decoder as over the network.

use std::future::{Future, ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dlft_core::ids::{AdId, IdempotencyKey};
use dlft_core::sense::ads::{AdStatus, AdsError, AdsPlatform, BatchPause, InsightsPage, InsightsQuery, LibraryAd};
use dlft_core::sense::models::{ModelError, Models, Summary};
use dlft_core::sense::wire::meta;
use dlft_core::time::Clock;

use crate::hosts::{handle_ads, handle_ads_stale, lock, reply_body};
use crate::rpc::AdsRequest;
use crate::world::AdsWorld;

pub struct InProcessAds<C> {
    pub world: Arc<Mutex<AdsWorld>>,
    pub clock: C,
    calls: AtomicU64,
    /// The model vendor never answers (tests of hang isolation).
    pub hang_models: bool,
    /// Status read-backs lag the truth by this much (the scenario's `stale_read_ms`).
    pub stale: dlft_core::time::Millis,
}

impl<C: Clock> InProcessAds<C> {
    pub fn new(world: Arc<Mutex<AdsWorld>>, clock: C) -> Self {
        InProcessAds { world, clock, calls: AtomicU64::new(0), hang_models: false, stale: dlft_core::time::Millis(0) }
    }

    /// External calls served so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn serve(&self, req: AdsRequest) -> Result<serde_json::Value, AdsError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let reply = handle_ads_stale(&mut lock(&self.world), &req, self.clock.now(), false, self.stale);
        reply_body(reply)
    }
}

/// In-process replies skip the wire: the turmoil sim exercises Meta's shapes
/// and decoder; the event driver is for horizons where encoding every page
/// as JSON would dominate the run.
impl<C: Clock> AdsPlatform for InProcessAds<C> {
    fn insights(&self, query: &InsightsQuery) -> impl Future<Output = Result<InsightsPage, AdsError>> + Send {
        self.calls.fetch_add(1, Ordering::SeqCst);
        ready(crate::hosts::insights_page(&mut lock(&self.world), None, query, self.clock.now()))
    }
    fn pause(&self, ad: &AdId, key: &IdempotencyKey) -> impl Future<Output = Result<(), AdsError>> + Send {
        let req = AdsRequest::Pause { ad: ad.clone(), key: key.clone() };
        ready(self.serve(req).and_then(|b| meta::decode_pause(&b)))
    }
    fn status(&self, ad: &AdId) -> impl Future<Output = Result<AdStatus, AdsError>> + Send {
        ready(self.serve(AdsRequest::Status { ad: ad.clone() }).and_then(|b| meta::decode_status(&b)))
    }
    fn pause_batch(&self, items: &[(AdId, IdempotencyKey)]) -> impl Future<Output = BatchPause> + Send {
        let n = items.len();
        ready(
            self.serve(AdsRequest::PauseBatch { items: items.to_vec() }).and_then(|b| meta::decode_pause_batch(&b, n)),
        )
    }
    fn library(&self, page: &str) -> impl Future<Output = Result<Vec<LibraryAd>, AdsError>> + Send {
        ready(self.serve(AdsRequest::Library { page: page.into() }).and_then(|b| meta::decode_archive(&b)))
    }
}

impl<C: Clock> Models for InProcessAds<C> {
    fn summarize(
        &self,
        call_id: &str,
        page: &str,
        ads: &[LibraryAd],
    ) -> impl Future<Output = Result<Summary, ModelError>> + Send {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let req = AdsRequest::Summarize { call_id: call_id.into(), page: page.into(), ads: ads.to_vec() };
        let reply = (!self.hang_models).then(|| handle_ads(&mut lock(&self.world), &req, self.clock.now(), false));
        async move {
            match reply {
                Some(reply) => crate::hosts::model_reply(reply),
                None => std::future::pending().await,
            }
        }
    }
}

/// What an in-process run leaves behind, for checking.
pub struct InProcessRun {
    pub world: AdsWorld,
    pub store: dlft_core::store::Snapshot,
    pub end: dlft_core::time::Timestamp,
    /// External calls the platform served.
    pub calls: u64,
}

/// Virtual time on a paused tokio runtime: `sleep` parks the task, and when
/// every task is parked the runtime jumps to the next timer. This is the
/// fast event driver's clock: time costs nothing while nothing happens.
#[derive(Copy, Clone, Debug)]
pub struct VirtualClock {
    epoch: dlft_core::time::Timestamp,
    start: tokio::time::Instant,
}

impl VirtualClock {
    /// Must be called inside a paused runtime.
    #[allow(clippy::disallowed_methods)] // tokio's paused clock is virtual time
    pub fn new(epoch: dlft_core::time::Timestamp) -> VirtualClock {
        VirtualClock { epoch, start: tokio::time::Instant::now() }
    }
}

impl Clock for VirtualClock {
    #[allow(clippy::disallowed_methods)] // tokio's paused clock is virtual time
    fn now(&self) -> dlft_core::time::Timestamp {
        self.epoch + dlft_core::time::Millis(self.start.elapsed().as_millis() as u64)
    }
    fn sleep(&self, duration: dlft_core::time::Millis) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(duration.as_std())
    }
}

/// A current-thread runtime with time paused: the fast event driver.
pub fn virtual_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds")
}

/// Runs the loop for the scenario's duration with no network and no
/// faults, on virtual time that jumps from event to event.
pub fn run_in_process(scn: &crate::scenario::Scenario, seed: u64) -> InProcessRun {
    run_in_process_with(scn, seed, dlft_core::config::Sabotage::None)
}

pub fn run_in_process_with(
    scn: &crate::scenario::Scenario,
    seed: u64,
    sabotage: dlft_core::config::Sabotage,
) -> InProcessRun {
    run_in_process_until(scn, seed, sabotage, None, false)
}

/// The general form: stop at `until` (default: the scenario's end), and with
/// `hang_models` the model vendor never answers (a hang in one job kind).
pub fn run_in_process_until(
    scn: &crate::scenario::Scenario,
    seed: u64,
    sabotage: dlft_core::config::Sabotage,
    until: Option<dlft_core::time::Timestamp>,
    hang_models: bool,
) -> InProcessRun {
    use crate::run::{EPOCH, rng_for};
    use dlft_core::jobs::Ports;
    use dlft_core::probe::NoProbe;
    use dlft_core::store::SharedMemStore;
    use dlft_core::time::Millis;
    use dlft_core::worker::Worker;

    assert!(scn.brands.is_none(), "the in-process harness runs one brand on one account");
    virtual_runtime().block_on(async {
        let clock = VirtualClock::new(EPOCH);
        let world = Arc::new(Mutex::new(AdsWorld::new(scn, EPOCH, rng_for(seed, 1))));
        let mut ads = InProcessAds::new(world.clone(), clock);
        ads.hang_models = hang_models;
        ads.stale = Millis(scn.platform.stale_read_ms);
        let ads = Arc::new(ads);
        let store = SharedMemStore::new();
        let mut worker = Worker {
            ports: Ports {
                store: store.clone(),
                ads: ads.clone(),
                clock,
                probe: NoProbe,
                bank: dlft_core::jobs::NoBank,
            },
            cfg: scn.worker_config(sabotage),
            loop_cfg: scn.loop_config(),
            tenants: Default::default(),
            rng: rng_for(seed, 100),
            stop: Default::default(),
            pulse: Default::default(),
        };
        let end = until.unwrap_or(EPOCH + Millis::from_secs(scn.run.duration_s));
        worker.run(Some(end)).await.expect("the in-process store never replaces the worker");
        let world = lock(&world).clone();
        InProcessRun { world, store: store.lock().snapshot(), end, calls: ads.calls() }
    })
}
