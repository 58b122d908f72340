//! The sandbox's 17TRACK (`/17track/track/v2.2/{register|gettrackinfo|stoptrack}`):
//! the sim's parcels world (`dlft_sim::track17`) over HTTP, with the key
//! check (`17token`: none is 401, `invalid` is code -18010002) and the rate
//! limit (more than 3 requests in a second from one key is 429). `GET
//! /17track/_truth` lists each parcel's status now, whether it is
//! registered, and the requests refused by the rate limit.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use dlft_core::sense::wire::track17::{INVALID_KEY, REQUESTS_PER_SECOND};
use dlft_core::time::{Clock, Millis, Timestamp};
use dlft_live::SystemClock;
use dlft_sim::run::{rng_for, stream};
use dlft_sim::track17::TrackWorld;

/// Parcels the sandbox ships: one per order of its shop, shipped over the
/// three weeks before it started.
const PARCELS: u32 = 200;

struct World {
    parcels: TrackWorld,
    /// Each key's requests in the last second.
    recent: BTreeMap<String, VecDeque<Timestamp>>,
    limited: u64,
}

#[derive(Clone)]
pub struct Parcels(Arc<Mutex<World>>);

impl Parcels {
    pub fn new(seed: u64, start: Timestamp) -> Parcels {
        let mut rng = rng_for(seed, stream::PARCELS);
        let parcels = TrackWorld::new(PARCELS, start, Millis(21 * 86_400_000), &mut rng);
        Parcels(Arc::new(Mutex::new(World { parcels, recent: BTreeMap::new(), limited: 0 })))
    }
}

pub fn router(p: Parcels) -> Router {
    Router::new().route("/17track/track/v2.2/{op}", post(track)).route("/17track/_truth", get(truth)).with_state(p)
}

async fn track(
    State(p): State<Parcels>,
    Path(op): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let key = headers.get("17token").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if key.is_empty() {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"code": 401, "message": "no 17token"}))).into_response();
    }
    if key == "invalid" {
        return axum::Json(json!({"code": INVALID_KEY, "message": "The API key is invalid."})).into_response();
    }
    let now = SystemClock.now();
    let mut w = p.0.lock().unwrap_or_else(PoisonError::into_inner);
    let recent = w.recent.entry(key).or_default();
    while recent.front().is_some_and(|t| now.0.saturating_sub(t.0) >= 1_000) {
        recent.pop_front();
    }
    if recent.len() >= REQUESTS_PER_SECOND as usize {
        w.limited += 1;
        let reply = json!({"code": 429, "message": "Too many requests."});
        return (StatusCode::TOO_MANY_REQUESTS, axum::Json(reply)).into_response();
    }
    recent.push_back(now);
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"code": -18010001, "message": "the body is not JSON"})))
            .into_response();
    };
    let (status, reply) = w.parcels.serve(&op, &body, now);
    (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(reply)).into_response()
}

async fn truth(State(p): State<Parcels>) -> Response {
    let now = SystemClock.now();
    let w = p.0.lock().unwrap_or_else(PoisonError::into_inner);
    let parcels: Vec<Value> = w
        .parcels
        .parcels()
        .map(|x| {
            json!({"number": x.number, "status": x.status(now).as_str(),
                   "registered": w.parcels.is_registered(&x.number), "stopped": w.parcels.is_stopped(&x.number)})
        })
        .collect();
    axum::Json(json!({"parcels": parcels, "rate_limited": w.limited})).into_response()
}
