//! The fault plan of one seed: an explicit list of (time, fault) entries and
//! of probe-site crashes, drawn from the seed's fault stream and printed with
//! it. Being a plain list, it can be shrunk by deleting entries.

use std::fmt;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use dlft_core::probe::Site;

use crate::scenario::Scenario;
use crate::world::draw;

/// What a misbehaving vendor (the bank, the shop, the inbox) does with one
/// request that reached it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    Serve,
    /// Lost before the vendor saw it.
    Hang,
    /// Carried out, its reply lost (requests with an effect; a read is lost
    /// before instead).
    LoseReply,
    /// 429 or THROTTLED: not carried out.
    Limit,
    /// 5xx, after doing the work (half of those with an effect) or not.
    ServerError {
        applied: bool,
    },
}

/// A vendor's fault rates, in percent of its requests.
#[derive(Copy, Clone, Debug)]
pub struct FaultRates {
    pub lost_reply: u32,
    pub timeout: u32,
    pub limit: u32,
    pub server_error: u32,
}

/// One request's fate, drawn from the vendor's own stream: one roll, and
/// for a 5xx on a request with an effect, whether it was carried out.
pub fn vendor_fate(rng: &mut ChaCha8Rng, r: FaultRates, has_effect: bool) -> Fate {
    let roll = rng.random_range(0..100);
    let mut at = r.lost_reply;
    if roll < at {
        return if has_effect { Fate::LoseReply } else { Fate::Hang };
    }
    at += r.timeout;
    if roll < at {
        return Fate::Hang;
    }
    at += r.limit;
    if roll < at {
        return Fate::Limit;
    }
    at += r.server_error;
    if roll < at {
        return Fate::ServerError { applied: has_effect && rng.random_bool(0.5) };
    }
    Fate::Serve
}

/// Faults start this long into the run: the system first reaches steady state.
pub const FAULTS_FROM_MS: u64 = 60_000;
/// Restart delays drawn per plan (one per container loss, in order).
pub const RESTART_DELAYS: usize = 64;

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// worker ↔ database
    Db,
    /// worker ↔ ads platform
    Ads,
}

/// Which way a partition cuts.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Both,
    /// Worker → peer dropped; replies would flow.
    Outbound,
    /// Peer → worker dropped: requests arrive, replies are lost.
    Inbound,
}

/// Platform fault rates drawn for one seed (swarm testing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SwarmRates {
    pub timeout_pct: u32,
    pub rate_limit_pct: u32,
    pub ack_without_effect_pct: u32,
    pub partial_batch_pct: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// Container loss of worker `worker` (0-based) at an instant.
    Crash {
        worker: usize,
    },
    Partition {
        worker: usize,
        link: Link,
        for_ms: u64,
        direction: Direction,
    },
    /// The platform times out `storm_timeout_pct` of requests for a while.
    TimeoutStorm {
        for_ms: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimedFault {
    pub at_ms: u64,
    #[serde(flatten)]
    pub fault: Fault,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaultPlan {
    pub timed: Vec<TimedFault>,
    /// Crash the worker the n-th time it reaches the site.
    pub site_crashes: Vec<(Site, u32)>,
    pub restart_delays_ms: Vec<u64>,
    /// Swarm scenarios: this seed's platform fault rates.
    pub swarm: Option<SwarmRates>,
}

/// How many times a site is reached in a typical run bounds the occurrence
/// drawn for it: tick sites fire every minute, kill sites once per phase.
fn max_occurrence(site: Site) -> u64 {
    match site {
        Site::TickAfterPage | Site::TickAfterDecide | Site::BeforeFinish => 15,
        // Reached only by ticks that approve kills.
        Site::TickAfterBatchPause => 2,
        Site::KillBeforePause | Site::KillAfterPause | Site::KillAfterApplied | Site::KillAfterReadBack => 4,
        Site::ScanAfterFetch | Site::ScanAfterSummary => 6,
        Site::PayoutBeforePay | Site::PayoutAfterPay | Site::PayoutAfterApplied | Site::PayoutAfterReadBack => 4,
        Site::PayablesAfterOpen | Site::PayablesBeforeSettle => 3,
        Site::RefundBeforeCall | Site::RefundAfterCall | Site::RefundAfterApplied | Site::RefundAfterReadBack => 4,
        Site::RefundsAfterOpen | Site::RefundsBeforeSettle => 6,
        Site::ReplyBeforeSend | Site::ReplyAfterSend | Site::ReplyAfterApplied | Site::ReplyAfterReadBack => 4,
    }
}

impl FaultPlan {
    pub fn draw(scn: &Scenario, rng: &mut ChaCha8Rng) -> FaultPlan {
        let f = &scn.faults;
        let until_ms = (scn.run.duration_s - scn.run.heal_s) * 1000;
        let window = crate::scenario::Range { lo: FAULTS_FROM_MS.min(until_ms), hi: until_ms };
        let mut timed = Vec::new();
        // With one worker nothing is drawn for the choice, so single-worker
        // plans stay what they were.
        let workers = scn.run.workers as usize;
        let pick = |rng: &mut ChaCha8Rng| if workers > 1 { rng.random_range(0..workers) } else { 0 };
        for _ in 0..draw(rng, f.crashes) {
            let at_ms = draw(rng, window);
            timed.push(TimedFault { at_ms, fault: Fault::Crash { worker: pick(rng) } });
        }
        for (link, count) in [(Link::Db, f.db_partitions), (Link::Ads, f.ads_partitions)] {
            for _ in 0..draw(rng, count) {
                let for_ms = draw(rng, f.partition_ms);
                let worker = pick(rng);
                // Drawn only where one-way partitions are asked for: other plans stay as they were.
                let direction = if f.oneway_partition_pct > 0 && rng.random_range(0..100) < f.oneway_partition_pct {
                    if rng.random_bool(0.5) { Direction::Outbound } else { Direction::Inbound }
                } else {
                    Direction::Both
                };
                let fault = Fault::Partition { worker, link, for_ms, direction };
                timed.push(TimedFault { at_ms: draw(rng, window), fault });
            }
        }
        for _ in 0..draw(rng, f.timeout_storms) {
            let fault = Fault::TimeoutStorm { for_ms: draw(rng, f.storm_s) * 1000 };
            timed.push(TimedFault { at_ms: draw(rng, window), fault });
        }
        timed.sort_by_key(|t| t.at_ms);
        // Only sites this scenario's loop can reach.
        let sites: Vec<Site> = Site::ALL
            .into_iter()
            .filter(|s| scn.scan.is_some() || !matches!(s, Site::ScanAfterFetch | Site::ScanAfterSummary))
            // Payouts run only where the world has a bank.
            .filter(|s| scn.bank.is_some() || !s.is_payout())
            // Refunds run only where the world has a shop.
            .filter(|s| scn.shop.is_some() || !s.is_refund())
            // Replies run only where the world has a support inbox.
            .filter(|s| scn.support.is_some() || !s.is_reply())
            .collect();
        let site_crashes = (0..draw(rng, f.site_crashes))
            .map(|_| {
                let site = sites[rng.random_range(0..sites.len())];
                (site, rng.random_range(1..=max_occurrence(site)) as u32)
            })
            .collect();
        let restart_delays_ms = (0..RESTART_DELAYS).map(|_| draw(rng, f.restart_delay_ms)).collect();
        let p = &scn.platform;
        let swarm = f.swarm.then(|| SwarmRates {
            timeout_pct: rng.random_range(0..=p.timeout_pct),
            rate_limit_pct: rng.random_range(0..=p.rate_limit_pct),
            ack_without_effect_pct: rng.random_range(0..=p.ack_without_effect_pct),
            partial_batch_pct: rng.random_range(0..=p.partial_batch_pct),
        });
        FaultPlan { timed, site_crashes, restart_delays_ms, swarm }
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for t in &self.timed {
            let secs = t.at_ms as f64 / 1000.0;
            match &t.fault {
                Fault::Crash { worker } => writeln!(f, "  t={secs:.3}s crash worker #{}", worker + 1)?,
                Fault::Partition { worker, link, for_ms, direction } => writeln!(
                    f,
                    "  t={secs:.3}s partition worker #{}<->{link:?} ({direction:?}) for {for_ms}ms",
                    worker + 1
                )?,
                Fault::TimeoutStorm { for_ms } => writeln!(f, "  t={secs:.3}s ads timeout storm for {for_ms}ms")?,
            }
        }
        for (site, n) in &self.site_crashes {
            writeln!(f, "  crash worker at {site:?} #{n}")?;
        }
        if let Some(r) = &self.swarm {
            writeln!(
                f,
                "  swarm rates: timeouts {}%, rate limits {}%, acks without effect {}%, partial batches {}%",
                r.timeout_pct, r.rate_limit_pct, r.ack_without_effect_pct, r.partial_batch_pct
            )?;
        }
        Ok(())
    }
}
