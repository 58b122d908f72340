//! The live 17TRACK adapter (reqwest) against the sandbox's 17TRACK, over
//! real HTTP, both built on the same wire shapes and the sim's parcels
//! world: 45 numbers go in two batches (40 + 5) paced under the key's rate
//! (the sandbox refuses a fourth request in a second, and refused none of
//! the adapter's), a number registered twice is still registered, a number
//! whose carrier is unknown and one that is not a tracking number are
//! refused (the second never sent), every status read matches the world's
//! truth, and a wrong key is an auth error.

use std::time::Duration;

use dlft_core::sense::wire::track17::{Item, Rejection, Track17Error, TrackStatus};
use dlft_live::meta::Secret;
use dlft_live::track17::{MIN_INTERVAL, Track17, Track17Config};
use serde_json::Value;

mod common;

fn adapter(addr: &str, token: &str) -> Track17 {
    Track17::new(Track17Config {
        base_url: format!("http://{addr}/17track"),
        token: Secret::new(token.into()),
        timeout: Duration::from_secs(5),
        min_interval: MIN_INTERVAL,
    })
    .unwrap()
}

async fn truth(addr: &str) -> Value {
    reqwest::get(format!("http://{addr}/17track/_truth")).await.unwrap().json().await.unwrap()
}

fn item(n: &str) -> Item {
    Item { number: n.into(), carrier: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adapter_registers_in_batches_and_reads_what_the_world_says() {
    let (_sb, addr) = common::sandbox(6);
    let t = adapter(&addr, "sandbox-token");
    let world = truth(&addr).await;
    let parcels = world["parcels"].as_array().unwrap();
    let mut items: Vec<Item> = parcels[..45].iter().map(|p| item(p["number"].as_str().unwrap())).collect();
    items.push(item("ZZ0000000001XX"));
    items.push(item("not a number!"));

    let r = t.register(&items).await.unwrap();
    assert_eq!(r.accepted.len(), 45, "{r:?}");
    assert!(r.rejected.contains(&("ZZ0000000001XX".into(), Rejection::CarrierNotDetected)), "{r:?}");
    assert!(r.rejected.contains(&("not a number!".into(), Rejection::NotANumber)), "{r:?}");
    // Again (a reply lost after the effect): still registered, no error.
    let again = t.register(&items[..3]).await.unwrap();
    assert_eq!(again.accepted.len(), 3, "{again:?}");

    let (shipments, rejected) = t.track(&items).await.unwrap();
    assert_eq!(shipments.len(), 45);
    assert_eq!(rejected.len(), 2, "the unregistered and the non-number: {rejected:?}");
    let world = truth(&addr).await;
    let truth_of = |n: &str| {
        world["parcels"].as_array().unwrap().iter().find(|p| p["number"] == n).unwrap()["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for s in &shipments {
        assert_eq!(s.status.as_str(), truth_of(&s.number), "{}", s.number);
    }
    let delivered = shipments.iter().filter(|s| s.status == TrackStatus::Delivered).count();
    assert!(delivered > 20, "most parcels of three weeks arrived: {delivered}");
    assert_eq!(world["rate_limited"], 0, "the adapter stays under 3 requests a second");

    // The limit is real: a burst of ten from one key, refused from the fourth.
    let http = reqwest::Client::new();
    let mut codes = Vec::new();
    for _ in 0..10 {
        let r = http
            .post(format!("http://{addr}/17track/track/v2.2/gettrackinfo"))
            .header("17token", "burst-key")
            .body("[]")
            .send()
            .await
            .unwrap();
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes[..4], [200, 200, 200, 429], "{codes:?}");

    let stopped = t.stop(&items[..1]).await.unwrap();
    assert_eq!(stopped.accepted.len(), 1);
    assert!(matches!(adapter(&addr, "invalid").track(&items[..1]).await, Err(Track17Error::Auth(_))));
    assert!(matches!(adapter(&addr, "").track(&items[..1]).await, Err(Track17Error::Auth(_))));
}
