//! The parcels' world as 17TRACK reports it: each parcel's fate drawn from
//! a seed (delivered after a few days, lost and expired, or an exception),
//! its status at any instant derived from that fate, and the API's rules
//! (at most 40 numbers a request, registration before tracking, a number
//! registered twice, carriers not detected, numbers that are not numbers).
//! The sandbox serves it over HTTP (`dlft sandbox serve`, `/17track/…`);
//! the live adapter (`live/src/track17.rs`) decodes its replies with
//! `dlft_core::sense::wire::track17`, as it would 17TRACK's.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use dlft_core::sense::wire::track17::{
    ALREADY_REGISTERED, CARRIER_NOT_DETECTED, MAX_BATCH, NOT_REGISTERED, TOO_MANY_NUMBERS, TrackStatus, valid_number,
};
use dlft_core::time::{Millis, Timestamp};

pub const DAY: u64 = 86_400_000;
/// A parcel in transit this long without delivery: its tracking expires.
pub const EXPIRES_AFTER: Millis = Millis(30 * DAY);
/// The carrier code the world's parcels are shipped with.
pub const CARRIER: u32 = 100_001;

/// How a parcel's journey ends.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Delivered this long after shipping.
    Delivered(Millis),
    /// Never delivered: in transit until its tracking expires.
    Lost,
    /// A carrier exception this long after shipping.
    Exception(Millis),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parcel {
    pub number: String,
    pub carrier: u32,
    pub shipped_at: Timestamp,
    pub fate: Fate,
}

impl Parcel {
    /// The status 17TRACK reports at `now`.
    pub fn status(&self, now: Timestamp) -> TrackStatus {
        let age = Millis(now.0.saturating_sub(self.shipped_at.0));
        if age.0 < DAY / 4 {
            return TrackStatus::InfoReceived;
        }
        match self.fate {
            Fate::Delivered(after) if age >= after => TrackStatus::Delivered,
            Fate::Delivered(after) if age.0 + DAY / 2 >= after.0 => TrackStatus::OutForDelivery,
            Fate::Exception(after) if age >= after => TrackStatus::Exception,
            Fate::Lost if age >= EXPIRES_AFTER => TrackStatus::Expired,
            _ => TrackStatus::InTransit,
        }
    }
}

/// The tracking number of the world's parcel `n` (1-based).
pub fn number_of(n: u32) -> String {
    format!("DL{:09}DE", 100_000 + n)
}

/// The parcels and what has been registered.
#[derive(Clone, Debug)]
pub struct TrackWorld {
    parcels: BTreeMap<String, Parcel>,
    /// Registered numbers, with the carrier they were registered with.
    registered: BTreeMap<String, Option<u32>>,
    /// Numbers whose tracking was stopped (and not registered again since).
    stopped: BTreeSet<String>,
    /// Statuses reported by `gettrackinfo`.
    pub reads: u64,
}

impl TrackWorld {
    /// `n` parcels shipped up to `spread` before `now`: 85% delivered after
    /// 2 to 6 days, 10% lost, 5% an exception after 1 to 4 days.
    pub fn new(n: u32, now: Timestamp, spread: Millis, rng: &mut ChaCha8Rng) -> TrackWorld {
        let parcels = (1..=n)
            .map(|i| {
                let shipped_at = Timestamp(now.0.saturating_sub(rng.random_range(0..=spread.0)));
                let fate = match rng.random_range(0..100) {
                    0..85 => Fate::Delivered(Millis(rng.random_range(2 * DAY..6 * DAY))),
                    85..95 => Fate::Lost,
                    _ => Fate::Exception(Millis(rng.random_range(DAY..4 * DAY))),
                };
                let p = Parcel { number: number_of(i), carrier: CARRIER, shipped_at, fate };
                (p.number.clone(), p)
            })
            .collect();
        TrackWorld { parcels, registered: BTreeMap::new(), stopped: BTreeSet::new(), reads: 0 }
    }

    /// A world of exactly these parcels (the refund world ships one per order).
    pub fn of(parcels: impl IntoIterator<Item = Parcel>) -> TrackWorld {
        TrackWorld {
            parcels: parcels.into_iter().map(|p| (p.number.clone(), p)).collect(),
            registered: BTreeMap::new(),
            stopped: BTreeSet::new(),
            reads: 0,
        }
    }

    /// The parcel with this number.
    pub fn parcel(&self, number: &str) -> Option<&Parcel> {
        self.parcels.get(number)
    }

    pub fn parcels(&self) -> impl Iterator<Item = &Parcel> {
        self.parcels.values()
    }

    pub fn is_registered(&self, number: &str) -> bool {
        self.registered.contains_key(number)
    }

    /// Whether tracking `number` was stopped (and not registered again since).
    pub fn is_stopped(&self, number: &str) -> bool {
        self.stopped.contains(number)
    }

    /// One request to `op` (`register`, `gettrackinfo`, `stoptrack`) with
    /// `body` at `now`: the HTTP status and the reply 17TRACK would send.
    pub fn serve(&mut self, op: &str, body: &Value, now: Timestamp) -> (u16, Value) {
        let Some(items) = body.as_array() else {
            return (400, json!({"code": -18010001, "message": "the body is not a list of numbers"}));
        };
        if items.len() > MAX_BATCH {
            let message = format!("{} numbers: at most {MAX_BATCH} a request", items.len());
            return (
                200,
                json!({"code": TOO_MANY_NUMBERS, "data": {"errors": [{"code": TOO_MANY_NUMBERS, "message": message}]}}),
            );
        }
        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        let mut seen = BTreeSet::new();
        for item in items {
            let number = item.get("number").and_then(Value::as_str).unwrap_or("").to_string();
            let carrier = item.get("carrier").and_then(Value::as_u64).and_then(|c| u32::try_from(c).ok());
            let reject =
                |code: i64, message: &str| json!({"number": number, "error": {"code": code, "message": message}});
            if !seen.insert(number.clone()) {
                continue;
            }
            match op {
                "register" => {
                    if self.registered.contains_key(&number) {
                        rejected.push(reject(ALREADY_REGISTERED, "The tracking number is already registered."));
                    } else if !valid_number(&number) || (carrier.is_none() && !self.parcels.contains_key(&number)) {
                        rejected.push(reject(CARRIER_NOT_DETECTED, "The carrier cannot be detected."));
                    } else {
                        let carrier = carrier.or_else(|| self.parcels.get(&number).map(|p| p.carrier));
                        self.registered.insert(number.clone(), carrier);
                        self.stopped.remove(&number);
                        accepted.push(json!({"number": number, "carrier": carrier}));
                    }
                }
                "gettrackinfo" => match self.registered.get(&number) {
                    None => rejected.push(reject(NOT_REGISTERED, "The tracking number is not registered.")),
                    Some(carrier) => {
                        let status = self.parcels.get(&number).map_or(TrackStatus::NotFound, |p| p.status(now));
                        self.reads += 1;
                        accepted.push(json!({"number": number, "carrier": carrier,
                            "track_info": {"latest_status": {"status": status.as_str()}}}));
                    }
                },
                "stoptrack" => match self.registered.remove(&number) {
                    None => rejected.push(reject(NOT_REGISTERED, "The tracking number is not registered.")),
                    Some(carrier) => {
                        self.stopped.insert(number.clone());
                        accepted.push(json!({"number": number, "carrier": carrier}))
                    }
                },
                other => return (404, json!({"code": -18010404, "message": format!("no operation {other:?}")})),
            }
        }
        (200, json!({"code": 0, "data": {"accepted": accepted, "rejected": rejected}}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlft_core::sense::wire::track17::{Rejection, decode_register, decode_trackinfo};
    use rand::SeedableRng;

    #[test]
    fn the_world_follows_17tracks_rules() {
        let now = Timestamp(100 * DAY);
        let mut w = TrackWorld::new(50, now, Millis(20 * DAY), &mut ChaCha8Rng::seed_from_u64(1));
        let body = |ns: &[&str]| Value::Array(ns.iter().map(|n| json!({"number": n})).collect());
        let (http, v) = w.serve("gettrackinfo", &body(&[&number_of(1)]), now);
        let (_, rejected) = decode_trackinfo(http, &v).unwrap();
        assert_eq!(rejected, [(number_of(1), Rejection::NotRegistered)], "track before register: refused");
        let (http, v) = w.serve("register", &body(&[&number_of(1), &number_of(2), "ZZ99999", "no!"]), now);
        let r = decode_register(http, &v).unwrap();
        assert_eq!(r.accepted, [number_of(1), number_of(2)]);
        assert_eq!(r.rejected.len(), 2, "an unknown number without a carrier, and garbage: {r:?}");
        assert!(r.rejected.iter().all(|(_, why)| *why == Rejection::CarrierNotDetected));
        let (http, v) = w.serve("register", &body(&[&number_of(1)]), now);
        assert_eq!(decode_register(http, &v).unwrap().accepted, [number_of(1)], "registered twice: still registered");
        let (http, v) = w.serve("gettrackinfo", &body(&[&number_of(1), &number_of(2)]), now);
        let (shipments, _) = decode_trackinfo(http, &v).unwrap();
        let truth: Vec<TrackStatus> = [1, 2].map(|i| w.parcels[&number_of(i)].status(now)).to_vec();
        assert_eq!(shipments.iter().map(|s| s.status).collect::<Vec<_>>(), truth);
        let many: Vec<String> = (1..=41).map(number_of).collect();
        let (http, v) = w.serve("register", &body(&many.iter().map(String::as_str).collect::<Vec<_>>()), now);
        assert!(decode_register(http, &v).is_err(), "41 numbers: refused whole");
        let (http, v) = w.serve("stoptrack", &body(&[&number_of(2)]), now);
        assert_eq!(decode_register(http, &v).unwrap().accepted, [number_of(2)]);
        assert!(!w.is_registered(&number_of(2)) && w.is_stopped(&number_of(2)));
        assert_eq!(w.reads, 2, "statuses of registered numbers only");
    }

    #[test]
    fn a_parcels_status_follows_its_fate() {
        let p = |fate| Parcel { number: number_of(1), carrier: CARRIER, shipped_at: Timestamp(0), fate };
        let delivered = p(Fate::Delivered(Millis(3 * DAY)));
        let at = |d: f64| Timestamp((d * DAY as f64) as u64);
        assert_eq!(delivered.status(at(0.1)), TrackStatus::InfoReceived);
        assert_eq!(delivered.status(at(1.0)), TrackStatus::InTransit);
        assert_eq!(delivered.status(at(2.6)), TrackStatus::OutForDelivery);
        assert_eq!(delivered.status(at(3.0)), TrackStatus::Delivered);
        assert_eq!(p(Fate::Lost).status(at(29.0)), TrackStatus::InTransit);
        assert_eq!(p(Fate::Lost).status(at(30.0)), TrackStatus::Expired);
        assert_eq!(p(Fate::Exception(Millis(DAY))).status(at(1.5)), TrackStatus::Exception);
    }
}
