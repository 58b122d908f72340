//! The shipments sensor's port (issue 14): where a brand's parcels are, as
//! its tracker (17TRACK) reports them. The refund job asks it about the
//! parcels of the orders it is about to judge, so that "it never arrived"
//! is weighed against what the carrier says rather than what the claim
//! says; a brand without a tracker keeps the desk's word.
//!
//! Numbers are registered before they are read (a number registered before
//! counts as registered, so a run repeated after a lost reply converges),
//! and a parcel whose story has ended (delivered, or expired without
//! delivery) is stopped, so that the key's quota is spent only on parcels
//! still moving. Wire shapes and error classes: `sense::wire::track17`.

use std::future::Future;

use serde_json::Value;

use crate::sense::claims::Tracking;
use crate::sense::wire::track17::{self, Item, Registered, valid_number};
pub use crate::sense::wire::track17::{Rejection, Shipment, Track17Error, TrackStatus, Tracked};

/// Where a tracker's requests go: the live adapter's HTTP, or the sim's
/// wire. One request to `op` (`register`, `gettrackinfo`, `stoptrack`)
/// with `body`: its HTTP status and JSON body, or why none came.
pub trait Track17Post: Sync {
    fn post(&self, op: &str, body: Value) -> impl Future<Output = Result<(u16, Value), Track17Error>> + Send;
}

/// Numbers that are not tracking numbers are refused here, never sent.
fn split(items: &[Item]) -> (Vec<Item>, Vec<(String, Rejection)>) {
    let (good, bad): (Vec<&Item>, Vec<&Item>) = items.iter().partition(|i| valid_number(&i.number));
    (good.into_iter().cloned().collect(), bad.into_iter().map(|i| (i.number.clone(), Rejection::NotANumber)).collect())
}

/// `op` (`register` or `stoptrack`) for `items`, at most 40 a request (a
/// number registered before counts as registered).
pub async fn each<P: Track17Post>(p: &P, op: &str, items: &[Item]) -> Result<Registered, Track17Error> {
    let (good, bad) = split(items);
    let mut out = Registered { accepted: Vec::new(), rejected: bad };
    for body in track17::batches(&good) {
        let (status, reply) = p.post(op, body).await?;
        let r = track17::decode_register(status, &reply)?;
        out.accepted.extend(r.accepted);
        out.rejected.extend(r.rejected);
    }
    Ok(out)
}

/// The latest status of each of `items`, at most 40 a request.
pub async fn read<P: Track17Post>(p: &P, items: &[Item]) -> Result<Tracked, Track17Error> {
    let (good, mut rejected) = split(items);
    let mut shipments = Vec::new();
    for body in track17::batches(&good) {
        let (status, reply) = p.post("gettrackinfo", body).await?;
        let (s, r) = track17::decode_trackinfo(status, &reply)?;
        shipments.extend(s);
        rejected.extend(r);
    }
    Ok((shipments, rejected))
}

fn items(numbers: &[String]) -> Vec<Item> {
    numbers.iter().map(|n| Item { number: n.clone(), carrier: None }).collect()
}

/// [`Shipments::track`] over any wire: register `numbers`, then read what
/// was registered (a number refused at registration is reported refused,
/// never read).
pub async fn register_and_read<P: Track17Post>(p: &P, numbers: &[String]) -> Result<Tracked, Track17Error> {
    let registered = each(p, "register", &items(numbers)).await?;
    let (shipments, mut refused) = read(p, &items(&registered.accepted)).await?;
    refused.extend(registered.rejected);
    Ok((shipments, refused))
}

/// [`Shipments::stop`] over any wire.
pub async fn stop_all<P: Track17Post>(p: &P, numbers: &[String]) -> Result<(), Track17Error> {
    each(p, "stoptrack", &items(numbers)).await.map(|_| ())
}

/// A brand's parcel tracker. The provided methods are a brand without one:
/// nothing is tracked, and the claims desk's tracking stands.
pub trait Shipments: Send + Sync {
    /// Whether the brand has a tracker at all.
    fn tracks(&self) -> bool {
        false
    }
    /// Registers `numbers` (a number registered before counts) and reads
    /// each one's latest status; numbers the tracker refused (not a
    /// tracking number, carrier not detected, …) come back as rejected.
    fn track(&self, _numbers: &[String]) -> impl Future<Output = Result<Tracked, Track17Error>> + Send {
        std::future::ready(Ok((Vec::new(), Vec::new())))
    }
    /// Stops tracking `numbers` (their parcels' stories have ended).
    fn stop(&self, _numbers: &[String]) -> impl Future<Output = Result<(), Track17Error>> + Send {
        std::future::ready(Ok(()))
    }
}

impl<T: Shipments> Shipments for &T {
    fn tracks(&self) -> bool {
        (**self).tracks()
    }
    fn track(&self, numbers: &[String]) -> impl Future<Output = Result<Tracked, Track17Error>> + Send {
        (**self).track(numbers)
    }
    fn stop(&self, numbers: &[String]) -> impl Future<Output = Result<(), Track17Error>> + Send {
        (**self).stop(numbers)
    }
}

/// A brand without a tracker.
impl Shipments for crate::sense::bank::NoBank {}

/// Whether a parcel in this state needs no more tracking: delivered, or
/// tracking that expired without delivery.
pub fn is_final(status: TrackStatus) -> bool {
    matches!(status, TrackStatus::Delivered | TrackStatus::Expired)
}

/// What an order's parcels, as the tracker reports them, say of the order:
/// lost if any parcel was lost (a failed delivery, an exception, expired
/// without delivery); delivered if every parcel was; moving if one still
/// is; unknown when the tracker knows none of them (the desk's word stands).
pub fn order_tracking<'a>(parcels: impl IntoIterator<Item = &'a TrackStatus>) -> Tracking {
    let states: Vec<Tracking> = parcels.into_iter().map(|s| s.tracking()).collect();
    if states.contains(&Tracking::Lost) {
        Tracking::Lost
    } else if !states.is_empty() && states.iter().all(|t| *t == Tracking::Delivered) {
        Tracking::Delivered
    } else if states.contains(&Tracking::Moving) {
        Tracking::Moving
    } else {
        Tracking::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orders_parcels_fold_into_one_tracking() {
        use TrackStatus::*;
        assert_eq!(order_tracking(&[Delivered, Delivered]), Tracking::Delivered);
        assert_eq!(order_tracking(&[Delivered, InTransit]), Tracking::Moving, "one parcel still moving");
        assert_eq!(order_tracking(&[Delivered, Expired]), Tracking::Lost, "one parcel dropped out");
        assert_eq!(order_tracking(&[DeliveryFailure]), Tracking::Lost);
        assert_eq!(order_tracking(&[NotFound, NotFound]), Tracking::Unknown, "the tracker knows nothing yet");
        assert_eq!(order_tracking(&[NotFound, Delivered]), Tracking::Unknown, "not every parcel is known delivered");
        assert_eq!(order_tracking(&[]), Tracking::Unknown);
        assert!(is_final(Delivered) && is_final(Expired) && !is_final(Exception) && !is_final(InTransit));
    }
}
