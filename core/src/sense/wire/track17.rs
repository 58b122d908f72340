//! 17TRACK v2.2 wire shapes (`POST /track/v2.2/register`, `gettrackinfo`,
//! `stoptrack`; header `17token`): batches of at most 40 numbers, the
//! accepted/rejected reply, the status model, and the error codes
//! (`../shared/design/reference/live-apis.md`).
//!
//! A rejection is per number, inside an HTTP 200 with `code: 0`; a request
//! refused whole has a non-zero `code` (or HTTP 401/429). Registering a
//! number twice is rejected with -18019901 and means it is registered:
//! the decoder reports it as accepted, so a re-run after a lost reply
//! converges.

use serde::Serialize;
use serde_json::{Value, json};

use crate::sense::claims::Tracking;

/// Numbers per request at most.
pub const MAX_BATCH: usize = 40;
/// Requests per second per key (about 3: the adapter paces under it).
pub const REQUESTS_PER_SECOND: u32 = 3;
/// The key is invalid.
pub const INVALID_KEY: i64 = -18010002;
/// More than 40 numbers in one request.
pub const TOO_MANY_NUMBERS: i64 = -18010014;
/// Registered before (register).
pub const ALREADY_REGISTERED: i64 = -18019901;
/// Not registered (gettrackinfo, stoptrack).
pub const NOT_REGISTERED: i64 = -18019902;
/// The carrier could not be detected from the number.
pub const CARRIER_NOT_DETECTED: i64 = -18019903;

/// `track_info.latest_status.status`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum TrackStatus {
    NotFound,
    InfoReceived,
    InTransit,
    Expired,
    AvailableForPickup,
    OutForDelivery,
    DeliveryFailure,
    Delivered,
    Exception,
}

impl TrackStatus {
    pub const ALL: [TrackStatus; 9] = [
        TrackStatus::NotFound,
        TrackStatus::InfoReceived,
        TrackStatus::InTransit,
        TrackStatus::Expired,
        TrackStatus::AvailableForPickup,
        TrackStatus::OutForDelivery,
        TrackStatus::DeliveryFailure,
        TrackStatus::Delivered,
        TrackStatus::Exception,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrackStatus::NotFound => "NotFound",
            TrackStatus::InfoReceived => "InfoReceived",
            TrackStatus::InTransit => "InTransit",
            TrackStatus::Expired => "Expired",
            TrackStatus::AvailableForPickup => "AvailableForPickup",
            TrackStatus::OutForDelivery => "OutForDelivery",
            TrackStatus::DeliveryFailure => "DeliveryFailure",
            TrackStatus::Delivered => "Delivered",
            TrackStatus::Exception => "Exception",
        }
    }

    pub fn parse(s: &str) -> Option<TrackStatus> {
        TrackStatus::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// What the refund desk reads from it: not yet known, still moving,
    /// delivered, or lost (a failed delivery, an exception, or tracking
    /// that expired without delivery: the dropout).
    pub fn tracking(self) -> Tracking {
        match self {
            TrackStatus::NotFound => Tracking::Unknown,
            TrackStatus::InfoReceived
            | TrackStatus::InTransit
            | TrackStatus::AvailableForPickup
            | TrackStatus::OutForDelivery => Tracking::Moving,
            TrackStatus::Delivered => Tracking::Delivered,
            TrackStatus::Expired | TrackStatus::DeliveryFailure | TrackStatus::Exception => Tracking::Lost,
        }
    }
}

/// A tracking number as 17TRACK takes it: 5 to 50 letters and digits
/// (carriers' formats vary; anything else is not a tracking number).
pub fn valid_number(n: &str) -> bool {
    (5..=50).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// One number to register or read, with its carrier code when known.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Item {
    pub number: String,
    pub carrier: Option<u32>,
}

/// The request bodies for `items`, at most [`MAX_BATCH`] each, in order.
pub fn batches(items: &[Item]) -> Vec<Value> {
    items
        .chunks(MAX_BATCH)
        .map(|chunk| {
            Value::Array(
                chunk
                    .iter()
                    .map(|i| match i.carrier {
                        Some(c) => json!({"number": i.number, "carrier": c}),
                        None => json!({"number": i.number}),
                    })
                    .collect(),
            )
        })
        .collect()
}

/// Why 17TRACK refused one number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Rejection {
    /// Not a tracking number (refused here, never sent).
    NotANumber,
    NotRegistered,
    CarrierNotDetected,
    Other {
        code: i64,
        message: String,
    },
}

/// A request 17TRACK refused whole, or a reply that does not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Track17Error {
    /// 401, or code -18010002: the key is wrong (retrying will not help).
    #[error("17TRACK refused the key: {0}")]
    Auth(String),
    /// 429: over the key's rate; try again after a pause.
    #[error("17TRACK rate limit: {0}")]
    RateLimited(String),
    /// 5xx, or no answer: try again.
    #[error("17TRACK unavailable: {0}")]
    Unavailable(String),
    /// A request the API refused as malformed (over 40 numbers, …): our bug.
    #[error("17TRACK refused the request ({code}): {message}")]
    Refused { code: i64, message: String },
    #[error("17TRACK reply malformed: {0}")]
    Malformed(String),
}

/// The per-number outcome of a register or stoptrack call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registered {
    /// Registered now or before.
    pub accepted: Vec<String>,
    pub rejected: Vec<(String, Rejection)>,
}

/// One shipment as `gettrackinfo` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shipment {
    pub number: String,
    pub carrier: Option<u32>,
    pub status: TrackStatus,
}

/// What a `gettrackinfo` read: each registered number's latest status, and
/// the numbers refused (not registered, not a number, …).
pub type Tracked = (Vec<Shipment>, Vec<(String, Rejection)>);

/// Classifies a reply by HTTP status and top-level `code`, then returns its
/// `data` object.
fn data_of(http: u16, body: &Value) -> Result<&serde_json::Map<String, Value>, Track17Error> {
    let message = || body.get("message").and_then(Value::as_str).unwrap_or("").to_string();
    match http {
        401 | 403 => return Err(Track17Error::Auth(format!("HTTP {http} {}", message()))),
        429 => return Err(Track17Error::RateLimited(format!("HTTP 429 {}", message()))),
        500..=599 => return Err(Track17Error::Unavailable(format!("HTTP {http}"))),
        200 => {}
        other => return Err(Track17Error::Refused { code: i64::from(other), message: message() }),
    }
    let code = body.get("code").and_then(Value::as_i64).ok_or_else(|| Track17Error::Malformed("no code".into()))?;
    if code == INVALID_KEY {
        return Err(Track17Error::Auth(format!("code {code}")));
    }
    if code != 0 {
        let data_errors = body.pointer("/data/errors/0/message").and_then(Value::as_str).unwrap_or("");
        let text = if data_errors.is_empty() { message() } else { data_errors.to_string() };
        return Err(Track17Error::Refused { code, message: text });
    }
    body.get("data").and_then(Value::as_object).ok_or_else(|| Track17Error::Malformed("no data object".into()))
}

fn list<'a>(data: &'a serde_json::Map<String, Value>, field: &str) -> Result<&'a [Value], Track17Error> {
    match data.get(field) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(Track17Error::Malformed(format!("data.{field} is not a list"))),
    }
}

fn number_of(v: &Value) -> Result<String, Track17Error> {
    v.get("number")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Track17Error::Malformed("an item without a number".into()))
}

fn rejections(data: &serde_json::Map<String, Value>) -> Result<Vec<(String, i64, String)>, Track17Error> {
    list(data, "rejected")?
        .iter()
        .map(|r| {
            let code = r
                .pointer("/error/code")
                .and_then(Value::as_i64)
                .ok_or_else(|| Track17Error::Malformed("a rejection without error.code".into()))?;
            let message = r.pointer("/error/message").and_then(Value::as_str).unwrap_or("").to_string();
            Ok((number_of(r)?, code, message))
        })
        .collect()
}

fn rejection(code: i64, message: String) -> Rejection {
    match code {
        NOT_REGISTERED => Rejection::NotRegistered,
        CARRIER_NOT_DETECTED => Rejection::CarrierNotDetected,
        _ => Rejection::Other { code, message },
    }
}

/// Decodes the reply to `register` (or `stoptrack`): a number registered
/// before counts as accepted.
pub fn decode_register(http: u16, body: &Value) -> Result<Registered, Track17Error> {
    let data = data_of(http, body)?;
    let mut out = Registered::default();
    for a in list(data, "accepted")? {
        out.accepted.push(number_of(a)?);
    }
    for (number, code, message) in rejections(data)? {
        if code == ALREADY_REGISTERED {
            out.accepted.push(number);
        } else {
            out.rejected.push((number, rejection(code, message)));
        }
    }
    Ok(out)
}

/// Decodes the reply to `gettrackinfo`: each accepted number's latest
/// status (an unknown status name is malformed, never guessed), and the
/// rejected numbers.
pub fn decode_trackinfo(http: u16, body: &Value) -> Result<Tracked, Track17Error> {
    let data = data_of(http, body)?;
    let mut shipments = Vec::new();
    for a in list(data, "accepted")? {
        let number = number_of(a)?;
        let status = match a.pointer("/track_info/latest_status/status") {
            None | Some(Value::Null) => TrackStatus::NotFound,
            Some(Value::String(s)) => TrackStatus::parse(s)
                .ok_or_else(|| Track17Error::Malformed(format!("{number}: unknown status {s:?}")))?,
            Some(other) => return Err(Track17Error::Malformed(format!("{number}: status {other}"))),
        };
        let carrier = a.get("carrier").and_then(Value::as_u64).and_then(|c| u32::try_from(c).ok());
        shipments.push(Shipment { number, carrier, status });
    }
    let rejected = rejections(data)?.into_iter().map(|(n, c, m)| (n, rejection(c, m))).collect();
    Ok((shipments, rejected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_at_most_forty_numbers_in_order() {
        let items: Vec<Item> =
            (0..85).map(|i| Item { number: format!("RR{i:09}CN"), carrier: (i % 2 == 0).then_some(3011) }).collect();
        let b = batches(&items);
        assert_eq!(b.iter().map(|v| v.as_array().unwrap().len()).collect::<Vec<_>>(), [40, 40, 5]);
        assert_eq!(b[0][0], json!({"number": "RR000000000CN", "carrier": 3011}));
        assert_eq!(b[2][4], json!({"number": "RR000000084CN", "carrier": 3011}));
        assert_eq!(b[0][1], json!({"number": "RR000000001CN"}));
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn numbers_that_are_not_tracking_numbers_are_refused() {
        assert!(valid_number("RR123456789CN") && valid_number("12345"));
        for bad in ["", "1234", "RR 123456789CN", "RR123456789CN;DROP", "ü12345", &"9".repeat(51)] {
            assert!(!valid_number(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_number_registered_before_counts_as_accepted_and_rejections_are_classified() {
        let body = json!({"code": 0, "data": {
        "accepted": [{"number": "A1234", "carrier": 3011}],
        "rejected": [
            {"number": "B1234", "error": {"code": ALREADY_REGISTERED, "message": "registered"}},
            {"number": "C1234", "error": {"code": CARRIER_NOT_DETECTED, "message": "carrier"}},
            {"number": "D1234", "error": {"code": -18019999, "message": "odd"}}
        ]}});
        let r = decode_register(200, &body).unwrap();
        assert_eq!(r.accepted, ["A1234", "B1234"]);
        assert_eq!(r.rejected[0], ("C1234".into(), Rejection::CarrierNotDetected));
        assert!(matches!(&r.rejected[1].1, Rejection::Other { code: -18019999, .. }));
    }

    #[test]
    fn statuses_map_to_the_desks_tracking_and_unknown_ones_are_malformed() {
        let body = |s: Value| {
            json!({"code": 0, "data": {"accepted": [{"number": "A1234", "carrier": 3011,
                   "track_info": {"latest_status": {"status": s}}}], "rejected": []}})
        };
        let status = |s: &str| decode_trackinfo(200, &body(json!(s))).unwrap().0[0].status.tracking();
        assert_eq!(status("Delivered"), Tracking::Delivered);
        assert_eq!(status("OutForDelivery"), Tracking::Moving);
        assert_eq!(status("Expired"), Tracking::Lost, "tracking that dropped out without delivery");
        assert_eq!(status("NotFound"), Tracking::Unknown);
        assert_eq!(decode_trackinfo(200, &body(Value::Null)).unwrap().0[0].status, TrackStatus::NotFound);
        assert!(matches!(decode_trackinfo(200, &body(json!("Teleported"))), Err(Track17Error::Malformed(_))));
        assert!(matches!(decode_trackinfo(200, &body(json!(7))), Err(Track17Error::Malformed(_))));
    }

    #[test]
    fn whole_request_errors_are_classified() {
        assert!(matches!(decode_register(401, &json!({})), Err(Track17Error::Auth(_))));
        assert!(matches!(decode_register(200, &json!({"code": INVALID_KEY})), Err(Track17Error::Auth(_))));
        assert!(matches!(decode_register(429, &json!({})), Err(Track17Error::RateLimited(_))));
        assert!(matches!(decode_register(503, &json!({})), Err(Track17Error::Unavailable(_))));
        let over =
            json!({"code": TOO_MANY_NUMBERS, "data": {"errors": [{"code": TOO_MANY_NUMBERS, "message": "over 40"}]}});
        assert_eq!(
            decode_register(200, &over),
            Err(Track17Error::Refused { code: TOO_MANY_NUMBERS, message: "over 40".into() })
        );
        assert!(matches!(decode_register(200, &json!("garbage")), Err(Track17Error::Malformed(_))));
        assert!(matches!(
            decode_register(200, &json!({"code": 0, "data": {"accepted": "x"}})),
            Err(Track17Error::Malformed(_))
        ));
    }
}
