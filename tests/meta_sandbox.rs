//! The live Meta adapter (reqwest) against the sandbox, over real HTTP, for
//! the levels a kill escalates to: an ad's ad set and campaign are read
//! (`fields=adset_id,campaign_id`), an ad set is paused under its key and
//! its ads read `ADSET_PAUSED` (not spending, not stopped themselves), a
//! campaign's pause reads `CAMPAIGN_PAUSED` on its ad sets, a resume
//! restarts only the ads not paused themselves, an unknown node is a
//! permanent error; the sandbox's truth shows each change once, with its key.

#![allow(clippy::disallowed_methods, reason = "a wall-clock test against a real sandbox")]

use std::time::Duration;

use dlft_core::ids::{AdId, IdempotencyKey};
use dlft_core::sense::ads::{AdStatus, AdsError, AdsPlatform, Level};
use dlft_live::meta::{MetaAds, MetaConfig, Secret};
use serde_json::Value;

mod common;

fn ads(addr: &str) -> MetaAds {
    MetaAds::new(MetaConfig {
        base_url: format!("http://{addr}"),
        account_id: "act_1".into(),
        token: Secret::new("sandbox-token".into()),
        timeout: Duration::from_secs(5),
        account_utc_offset_min: 0,
    })
    .unwrap()
}

async fn truth(addr: &str) -> Value {
    reqwest::get(format!("http://{addr}/_truth")).await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adapter_pauses_and_resumes_ad_sets_and_campaigns_against_the_sandbox() {
    let (_sb, addr) = common::sandbox(5);
    let meta = ads(&addr);
    let (a, b) = (AdId::new("ad-001"), AdId::new("ad-002"));
    let parents = meta.parents(&a).await.unwrap();
    assert_eq!(meta.parents(&b).await.unwrap(), parents, "neighbours share an ad set");
    let set = parents.node(Level::AdSet);
    let campaign = parents.node(Level::Campaign);
    assert_eq!(meta.node_status(&set).await.unwrap(), AdStatus::Active);

    let key = IdempotencyKey::new("kill/ad-001/adset");
    meta.set_node(&set, true, &key).await.unwrap();
    assert_eq!(meta.node_status(&set).await.unwrap(), AdStatus::Paused);
    for ad in [&a, &b] {
        let s = meta.status(ad).await.unwrap();
        assert_eq!(s, AdStatus::Other("ADSET_PAUSED".into()));
        assert!(s.is_stopped() && !s.is_stopped_itself(), "stopped from above only");
    }
    // The ad's own pause (acknowledged without effect a quarter of the time
    // by this sandbox): call until it reads paused itself.
    let own = IdempotencyKey::new("kill/ad-001");
    for _ in 0..40 {
        meta.pause(&a, &own).await.unwrap();
        if meta.status(&a).await.unwrap() == AdStatus::Paused {
            break;
        }
    }
    assert_eq!(meta.status(&a).await.unwrap(), AdStatus::Paused);

    meta.set_node(&campaign, true, &IdempotencyKey::new("kill/ad-001/campaign")).await.unwrap();
    meta.set_node(&set, false, &IdempotencyKey::new("kill/ad-001/adset/resume")).await.unwrap();
    assert_eq!(meta.node_status(&set).await.unwrap(), AdStatus::Other("CAMPAIGN_PAUSED".into()));
    assert_eq!(meta.status(&b).await.unwrap(), AdStatus::Other("CAMPAIGN_PAUSED".into()));
    meta.set_node(&campaign, false, &IdempotencyKey::new("kill/ad-001/campaign/resume")).await.unwrap();
    assert_eq!(meta.status(&b).await.unwrap(), AdStatus::Active, "the sibling spends again");
    assert_eq!(meta.status(&a).await.unwrap(), AdStatus::Paused, "the loser stays paused itself");

    let t = truth(&addr).await;
    let changes: Vec<(String, String, bool)> = t["node_effects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (e["key"].as_str().unwrap().into(), e["node"].as_str().unwrap().into(), e["paused"].as_bool().unwrap())
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            ("kill/ad-001/adset".into(), set.id.clone(), true),
            ("kill/ad-001/campaign".into(), campaign.id.clone(), true),
            ("kill/ad-001/adset/resume".into(), set.id.clone(), false),
            ("kill/ad-001/campaign/resume".into(), campaign.id.clone(), false),
        ]
    );
    assert_eq!(t["paused_nodes"], serde_json::json!([]));

    let unknown = dlft_core::sense::ads::AdNode { level: Level::AdSet, id: "adset-9-9".into() };
    let err = meta.set_node(&unknown, true, &key).await.unwrap_err();
    assert!(matches!(err, AdsError::Permanent { code: 100, .. }), "{err:?}");
    assert!(matches!(meta.parents(&AdId::new("ad-999")).await, Err(AdsError::Permanent { .. })));
}
