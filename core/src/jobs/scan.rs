//! The store-scan pipeline: fetch the store's ad library, have a model
//! summarize what is new, record the store's activity (which sets its next
//! scan). Checkpointed after each step: a resumed attempt continues from the
//! last checkpoint, so a crash after `fetched` does not fetch again and a
//! crash after `summarized` does not pay for the model again.
//!
//! The model call is paid: its cost row is booked (written) before the call,
//! under the id sent with the call.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Attempt, JobError, Ports};
use crate::config::ScanConfig;
use crate::estimate::cadence::{cadence, observe};
use crate::probe::{Probe, Site};
use crate::sense::ads::{AdsPlatform, LibraryAd};
use crate::sense::models::{ModelError, Models};
use crate::store::{Checkpoint, PageActivity, Store};
use crate::telemetry::CostRow;
use crate::time::{Clock, Millis};

/// The schedule of `page`'s scans.
pub fn schedule_name(page: &str) -> String {
    format!("scan/{page}")
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    ads: Vec<LibraryAd>,
    new_ads: Vec<LibraryAd>,
    label: Option<String>,
}

fn checkpoint(step: &str, state: &State) -> Checkpoint {
    Checkpoint { step: step.into(), state: serde_json::to_value(state).expect("state serializes") }
}

impl From<ModelError> for JobError {
    fn from(e: ModelError) -> JobError {
        match e {
            ModelError::RateLimited { retry_after } => JobError::RetryAfter { wait: retry_after, why: e.to_string() },
            ModelError::Timeout => JobError::RetryAfter { wait: Millis(0), why: e.to_string() },
            ModelError::Overloaded => JobError::RetryAfter { wait: Millis(0), why: e.to_string() },
            ModelError::Refused(_) | ModelError::SpendLimit(_) | ModelError::Auth(_) => {
                JobError::Permanent(e.to_string())
            }
        }
    }
}

pub async fn run_scan<S: Store, A: AdsPlatform + Models, C: Clock, P: Probe, B: crate::sense::bank::Bank>(
    ports: &Ports<S, A, C, P, B>,
    cfg: &ScanConfig,
    attempt: &mut Attempt,
    page: &str,
    resume: Option<&Checkpoint>,
) -> Result<(), JobError> {
    let (mut step, mut state) = match resume {
        Some(cp) => (
            cp.step.as_str(),
            serde_json::from_value(cp.state.clone()).map_err(|e| JobError::Permanent(format!("checkpoint: {e}")))?,
        ),
        None => ("start", State::default()),
    };
    let known = ports.store.activities().await?.into_iter().find(|a| a.page == page);
    if step == "start" {
        let now = ports.clock.now();
        let ads = ports.ads.library(page).await;
        attempt.record_call(now, "ads_archive", &ads);
        let ads = ads?;
        let seen: BTreeSet<&String> = known.iter().flat_map(|k| &k.known_ads).collect();
        state.new_ads = ads.iter().filter(|a| !seen.contains(&a.id)).cloned().collect();
        state.ads = ads;
        let mut batch = attempt.batch();
        batch.checkpoint = Some(checkpoint("fetched", &state));
        ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
        ports.probe.reached(Site::ScanAfterFetch, page).await;
        step = "fetched";
    }
    if step == "fetched" {
        // Book the paid call first: a crash after the call cannot lose its cost.
        let call_id = attempt.next_call_id("summarize");
        let booked = CostRow {
            call_id: call_id.clone(),
            brand: attempt.brand.clone(),
            at: ports.clock.now(),
            vendor: "model".into(),
            op: "summarize".into(),
            ok: true,
            cost: cfg.model_call,
        };
        let mut batch = attempt.batch();
        batch.costs.push(booked);
        ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
        let summary = ports.ads.summarize(&call_id, page, &state.new_ads).await?;
        ports.probe.reached(Site::ScanAfterSummary, page).await;
        state.label = Some(summary.label);
        let mut batch = attempt.batch();
        batch.checkpoint = Some(checkpoint("summarized", &state));
        ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
    }
    let now = ports.clock.now();
    let prev = known.as_ref().map(|k| k.activity).unwrap_or_default();
    let activity = observe(prev, state.new_ads.len() as u32, now, &cfg.cadence);
    let mut known_ads: BTreeSet<String> = known.map(|k| k.known_ads).unwrap_or_default();
    known_ads.extend(state.ads.iter().map(|a| a.id.clone()));
    let mut batch = attempt.batch();
    batch.activity = Some(PageActivity {
        page: page.to_string(),
        activity,
        known_ads,
        next_scan: now + cadence(activity.score_milli, &cfg.cadence),
        label: state.label.unwrap_or_default(),
    });
    batch.checkpoint = Some(checkpoint("recorded", &State::default()));
    ports.store.write(&attempt.lease, batch, now).await?;
    Ok(())
}
