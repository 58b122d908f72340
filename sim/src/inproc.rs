//! The ads platform port served in-process from the world model, with no
//! network and no faults: for tests and for drivers that jump virtual time.
//! Replies go through the same Meta shapes and decoder as over the network.

use std::future::{Future, ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dlft_core::ads::{AdStatus, AdsError, AdsPlatform, InsightsPage, InsightsQuery};
use dlft_core::ids::{AdId, IdempotencyKey};
use dlft_core::time::Clock;
use dlft_core::wire::meta;

use crate::hosts::{handle_ads, lock, reply_body};
use crate::rpc::AdsRequest;
use crate::world::AdsWorld;

pub struct InProcessAds<C> {
    pub world: Arc<Mutex<AdsWorld>>,
    pub clock: C,
    calls: AtomicU64,
}

impl<C: Clock> InProcessAds<C> {
    pub fn new(world: Arc<Mutex<AdsWorld>>, clock: C) -> Self {
        InProcessAds { world, clock, calls: AtomicU64::new(0) }
    }

    /// External calls served so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn serve(&self, req: AdsRequest) -> Result<serde_json::Value, AdsError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let reply = handle_ads(&mut lock(&self.world), &req, self.clock.now(), false);
        reply_body(reply)
    }
}

impl<C: Clock> AdsPlatform for InProcessAds<C> {
    fn insights(&self, query: &InsightsQuery) -> impl Future<Output = Result<InsightsPage, AdsError>> + Send {
        ready(self.serve(AdsRequest::Insights { query: query.clone() }).and_then(|b| meta::decode_insights(&b)))
    }
    fn pause(&self, ad: &AdId, key: &IdempotencyKey) -> impl Future<Output = Result<(), AdsError>> + Send {
        let req = AdsRequest::Pause { ad: ad.clone(), key: key.clone() };
        ready(self.serve(req).and_then(|b| meta::decode_pause(&b)))
    }
    fn status(&self, ad: &AdId) -> impl Future<Output = Result<AdStatus, AdsError>> + Send {
        ready(self.serve(AdsRequest::Status { ad: ad.clone() }).and_then(|b| meta::decode_status(&b)))
    }
}
