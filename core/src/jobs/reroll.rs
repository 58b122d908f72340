//! The hourly bandit re-roll job: estimate, leave out the ads being
//! killed, allocate (`propose::allocation`), and write the allocation once
//! per slot with its event row.

use std::collections::BTreeSet;

use crate::act::intent::Action;
use crate::estimate::estimator::estimate;
use crate::ids::AdId;
use crate::probe::Probe;
use crate::propose::allocation::allocate;
use crate::store::{IntentFilter, Store};
use crate::time::{Clock, Timestamp};

use super::{Attempt, JobError, Ports};

/// The re-roll job of one slot: estimate every ad on matured data, leave
/// out the ads with a kill intent, allocate, and write the allocation.
pub async fn run_reroll<S: Store, A, C: Clock, P: Probe, B: crate::sense::bank::Bank>(
    ports: &Ports<S, A, C, P, B>,
    cfg: &crate::config::LoopConfig,
    attempt: &mut Attempt,
    slot: Timestamp,
) -> Result<(), JobError> {
    let now = ports.clock.now();
    let matured = crate::estimate::estimator::matured_until(now, &cfg.estimator);
    let rows = ports.store.spend_summary(&attempt.brand, now - cfg.estimate_window, matured).await?;
    let estimates = estimate(&rows, now, &cfg.estimator).map_err(|e| JobError::Permanent(e.to_string()))?;
    let excluded: BTreeSet<AdId> = ports
        .store
        .brand_intents(&attempt.brand, &IntentFilter::kinds(&[Action::KILL_AD]))
        .await?
        .iter()
        .filter_map(|i| i.action.killed_ad().cloned())
        .collect();
    let mut batch = attempt.batch();
    batch.allocation = Some(allocate(&estimates, &excluded, slot));
    ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
    Ok(())
}
