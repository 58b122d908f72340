//! Aggregating seed reports into a scenario summary, judging the scenario's
//! assertions, and naming the command that reproduces each failing seed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::checker::Violation;
use crate::run::{FaultCounts, SeedReport};
use crate::scenario::Scenario;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// Nearest-rank percentiles; zeros for no samples.
pub fn percentiles(samples: &[u64]) -> Percentiles {
    if samples.is_empty() {
        return Percentiles::default();
    }
    let mut s = samples.to_vec();
    s.sort_unstable();
    let rank = |p: u64| s[((p * s.len() as u64).div_ceil(100) as usize).saturating_sub(1)];
    Percentiles { p50: rank(50), p99: rank(99), max: *s.last().expect("non-empty") }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Assertion {
    pub name: String,
    pub limit: String,
    pub actual: String,
    pub ok: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub seeds: u64,
    pub mttr_ms: Percentiles,
    /// The seed with the slowest recovery, to look at with `--seed`.
    pub mttr_worst_seed: Option<u64>,
    pub crashes: u64,
    /// The driver the seeds ran on (`turmoil` or `event`).
    pub driver: crate::scenario::Driver,
    /// Faults that actually happened, summed over seeds.
    pub faults: FaultCounts,
    /// How many seeds saw each kind of fault at least once.
    pub seeds_with: FaultCounts,
    /// How many seeds lost a container at each probe site.
    pub seeds_with_crash_at: BTreeMap<String, u64>,
    pub leak_cents: i64,
    pub violations: Vec<Violation>,
    /// Seed → event-log digest (hex SHA-256).
    pub digests: BTreeMap<u64, String>,
    pub kills: u64,
    pub losers_killed: u64,
    pub winners_killed: u64,
    /// How often each probe site was where a container died.
    pub crash_sites: BTreeMap<String, u64>,
    /// Model spend over all seeds (world truth), and the worst seed's.
    pub model_cents: i64,
    pub model_cents_seed_max: i64,
    /// Seeds whose run ended with a schedule disabled by the breaker.
    pub seeds_with_breaker_open: u64,
    /// Per schedule the breaker disabled (`name`, or `brand/name` for a
    /// brand other than `default`): the seeds it was open at the end in.
    pub breakers_by_schedule: BTreeMap<String, u64>,
    /// Kills committed by a webhook's reconcile job (read back first).
    pub webhook_commits: u64,
    /// Bandit re-rolls written over all seeds (one allocation per slot).
    pub rerolls: u64,
    /// Committed kills per brand, over every seed.
    pub kills_by_brand: BTreeMap<String, u64>,
    /// Payouts committed and abandoned, and payables refused, over every seed.
    pub payouts: u64,
    pub payouts_abandoned: u64,
    pub payables_refused: u64,
    pub payouts_reversed: u64,
    /// Refunds committed and abandoned, claims refused, and the most ring
    /// claims one seed refunded in full before catching the ring.
    pub refunds: u64,
    pub refunds_abandoned: u64,
    pub claims_refused: u64,
    pub ring_refunds_before_caught_max: u32,
    /// Claims of honest customers refused, over all seeds.
    pub honest_refused: u64,
    /// Support messages that landed, replies committed, replies to messages
    /// with manipulation signals, and model calls per vendor (answered,
    /// failed), over every seed.
    pub messages: u64,
    pub replies: u64,
    pub replies_flagged: u64,
    pub model_calls: BTreeMap<String, (u64, u64)>,
    /// Model calls the brands' model caps refused, over every seed.
    pub model_calls_refused: u64,
    /// Refunds of accepted support offers committed, over every seed.
    pub offer_refunds: u64,
    /// Ad sets and campaigns paused by escalation and resumed, over every
    /// seed; the seeds that escalated at all; nodes still paused at the end.
    pub escalations: u64,
    pub resumes: u64,
    pub seeds_with_escalation: u64,
    pub collateral_held: u64,
    pub assertions: Vec<Assertion>,
    pub failing_seeds: Vec<u64>,
    pub reproduce: Vec<String>,
    pub passed: bool,
}

/// The one-line command that reruns `seed`; `extra` carries flags that
/// changed the run (such as a sabotage), so the line reproduces it exactly.
pub fn reproduce_command(scenario_path: &str, seed: u64, extra: &str) -> String {
    let extra = if extra.is_empty() { String::new() } else { format!(" {extra}") };
    format!("dlft sim run {scenario_path} --seed {seed}{extra}")
}

pub fn summarize(scn: &Scenario, scenario_path: &str, extra: &str, reports: &[SeedReport]) -> Summary {
    let samples: Vec<u64> = reports.iter().flat_map(|r| r.mttr_ms.iter().copied()).collect();
    let mttr = percentiles(&samples);
    let leak: i64 = reports.iter().map(|r| r.leak_cents).sum();
    let violations: Vec<Violation> = reports.iter().flat_map(|r| r.violations.iter().cloned()).collect();
    let kills: u64 = reports.iter().map(|r| u64::from(r.kills)).sum();
    let site_name = |site: &dlft_core::probe::Site| {
        serde_json::to_value(site).expect("serializes").as_str().unwrap_or("?").to_string()
    };
    let mut crash_sites = BTreeMap::new();
    let mut seeds_with_crash_at = BTreeMap::new();
    for r in reports {
        for site in &r.crash_sites {
            *crash_sites.entry(site_name(site)).or_insert(0) += 1;
        }
        let distinct: std::collections::BTreeSet<String> = r.crash_sites.iter().map(site_name).collect();
        for site in distinct {
            *seeds_with_crash_at.entry(site).or_insert(0) += 1;
        }
    }
    let a = &scn.assertions;
    let seeds = reports.len() as u64;
    let mut assertions = vec![
        Assertion {
            name: "mttr_p99_ms".into(),
            limit: format!("<= {}", a.mttr_p99_ms_max),
            actual: mttr.p99.to_string(),
            ok: mttr.p99 <= a.mttr_p99_ms_max,
        },
        Assertion {
            name: "leak_cents".into(),
            limit: format!("<= {}", a.leak_cents_max),
            actual: leak.to_string(),
            ok: leak <= a.leak_cents_max,
        },
        Assertion {
            name: "violations".into(),
            limit: "== 0".into(),
            actual: violations.len().to_string(),
            ok: violations.is_empty(),
        },
        Assertion {
            name: "kills".into(),
            limit: format!(">= {} per seed on average", a.min_mean_kills),
            actual: format!("{} ({kills} over {seeds} seeds)", kills / seeds.max(1)),
            ok: kills >= a.min_mean_kills * seeds,
        },
    ];
    let payouts: u64 = reports.iter().map(|r| u64::from(r.payouts)).sum();
    if let Some(min) = a.min_mean_payouts {
        assertions.push(Assertion {
            name: "payouts".into(),
            limit: format!(">= {min} per seed on average"),
            actual: format!("{} ({payouts} over {seeds} seeds)", payouts / seeds.max(1)),
            ok: payouts >= min * seeds,
        });
    }
    let refunds: u64 = reports.iter().map(|r| u64::from(r.refunds)).sum();
    if let Some(min) = a.min_mean_refunds {
        assertions.push(Assertion {
            name: "refunds".into(),
            limit: format!(">= {min} per seed on average"),
            actual: format!("{} ({refunds} over {seeds} seeds)", refunds / seeds.max(1)),
            ok: refunds >= min * seeds,
        });
    }
    let replies: u64 = reports.iter().map(|r| u64::from(r.replies)).sum();
    if let Some(min) = a.min_mean_replies {
        assertions.push(Assertion {
            name: "replies".into(),
            limit: format!(">= {min} per seed on average"),
            actual: format!("{} ({replies} over {seeds} seeds)", replies / seeds.max(1)),
            ok: replies >= min * seeds,
        });
    }
    if let Some(max) = a.ring_refunds_max {
        let worst = reports.iter().map(|r| r.ring_refunds_before_caught).max().unwrap_or(0);
        assertions.push(Assertion {
            name: "ring_caught".into(),
            limit: format!("<= {max} ring claims refunded in full before the ring is caught, every seed"),
            actual: format!("{worst} at most"),
            ok: worst <= max,
        });
    }
    if let Some(within) = a.commit_within_s {
        let late = violations.iter().filter(|v| v.invariant == "reconcile_window").count();
        assertions.push(Assertion {
            name: "commit_within_s".into(),
            limit: format!("every effect committed within {within} s"),
            actual: format!("{late} late"),
            ok: late == 0,
        });
    }
    let mut failing: Vec<u64> = reports
        .iter()
        .filter(|r| !r.violations.is_empty() || r.leak_cents > a.leak_cents_max)
        .map(|r| r.seed)
        .collect();
    if mttr.p99 > a.mttr_p99_ms_max {
        failing.extend(reports.iter().filter(|r| r.mttr_ms.iter().any(|&m| m > a.mttr_p99_ms_max)).map(|r| r.seed));
    }
    let model_max = reports.iter().map(|r| r.model_cents).max().unwrap_or(0);
    let tripped = reports.iter().filter(|r| !r.breakers.is_empty()).count() as u64;
    if a.breaker_trips {
        assertions.push(Assertion {
            name: "breaker_trips".into(),
            limit: "in every seed".into(),
            actual: format!("{tripped} of {seeds} seeds"),
            ok: tripped == seeds,
        });
        failing.extend(reports.iter().filter(|r| r.breakers.is_empty()).map(|r| r.seed));
    }
    if let Some(max) = a.model_cents_per_seed_max {
        assertions.push(Assertion {
            name: "model_cents_per_seed".into(),
            limit: format!("<= {max}"),
            actual: model_max.to_string(),
            ok: model_max <= max,
        });
        failing.extend(reports.iter().filter(|r| r.model_cents > max).map(|r| r.seed));
    }
    if let Some(min) = a.min_payout_days {
        let short: Vec<&SeedReport> = reports.iter().filter(|r| u64::from(r.payout_days) < min).collect();
        assertions.push(Assertion {
            name: "payout_days".into(),
            limit: format!(">= {min} calendar days with payouts in every seed"),
            actual: format!("{} seeds short", short.len()),
            ok: short.is_empty(),
        });
        failing.extend(short.iter().map(|r| r.seed));
    }
    failing.sort_unstable();
    failing.dedup();
    let passed = assertions.iter().all(|x| x.ok);
    Summary {
        scenario: scn.name.clone(),
        seeds,
        mttr_ms: mttr,
        mttr_worst_seed: reports
            .iter()
            .filter_map(|r| r.mttr_ms.iter().max().map(|m| (*m, std::cmp::Reverse(r.seed))))
            .max()
            .map(|(_, std::cmp::Reverse(seed))| seed),
        crashes: reports.iter().map(|r| u64::from(r.crashes)).sum(),
        driver: scn.run.driver,
        faults: reports.iter().fold(FaultCounts::default(), |mut acc, r| {
            acc.add(&r.faults);
            acc
        }),
        seeds_with: reports.iter().fold(FaultCounts::default(), |mut acc, r| {
            acc.add(&r.faults.happened());
            acc
        }),
        seeds_with_crash_at,
        leak_cents: leak,
        reproduce: failing.iter().map(|&s| reproduce_command(scenario_path, s, extra)).collect(),
        failing_seeds: failing,
        violations,
        digests: reports.iter().map(|r| (r.seed, r.digest.clone())).collect(),
        kills,
        model_cents: reports.iter().map(|r| r.model_cents).sum(),
        model_cents_seed_max: model_max,
        seeds_with_breaker_open: tripped,
        breakers_by_schedule: reports.iter().flat_map(|r| &r.breakers).fold(BTreeMap::new(), |mut m, (s, _)| {
            *m.entry(s.clone()).or_insert(0) += 1;
            m
        }),
        webhook_commits: reports.iter().map(|r| u64::from(r.webhook_commits)).sum(),
        rerolls: reports.iter().map(|r| u64::from(r.rerolls)).sum(),
        kills_by_brand: reports.iter().flat_map(|r| &r.kills_by_brand).fold(BTreeMap::new(), |mut m, (b, n)| {
            *m.entry(b.clone()).or_insert(0) += u64::from(*n);
            m
        }),
        payouts,
        payouts_abandoned: reports.iter().map(|r| u64::from(r.payouts_abandoned)).sum(),
        payables_refused: reports.iter().map(|r| u64::from(r.payables_refused)).sum(),
        payouts_reversed: reports.iter().map(|r| u64::from(r.payouts_reversed)).sum(),
        refunds,
        refunds_abandoned: reports.iter().map(|r| u64::from(r.refunds_abandoned)).sum(),
        claims_refused: reports.iter().map(|r| u64::from(r.claims_refused)).sum(),
        ring_refunds_before_caught_max: reports.iter().map(|r| r.ring_refunds_before_caught).max().unwrap_or(0),
        honest_refused: reports.iter().map(|r| u64::from(r.honest_refused)).sum(),
        messages: reports.iter().map(|r| u64::from(r.messages)).sum(),
        replies: reports.iter().map(|r| u64::from(r.replies)).sum(),
        replies_flagged: reports.iter().map(|r| u64::from(r.replies_flagged)).sum(),
        model_calls_refused: reports.iter().map(|r| u64::from(r.model_calls_refused)).sum(),
        offer_refunds: reports.iter().map(|r| u64::from(r.offer_refunds)).sum(),
        model_calls: reports.iter().flat_map(|r| &r.model_calls).fold(BTreeMap::new(), |mut m, (v, (ok, failed))| {
            let e: &mut (u64, u64) = m.entry(v.clone()).or_default();
            e.0 += ok;
            e.1 += failed;
            m
        }),
        escalations: reports.iter().map(|r| u64::from(r.escalations)).sum(),
        resumes: reports.iter().map(|r| u64::from(r.resumes)).sum(),
        seeds_with_escalation: reports.iter().filter(|r| r.escalations > 0).count() as u64,
        collateral_held: reports.iter().map(|r| u64::from(r.collateral_held)).sum(),
        losers_killed: reports.iter().map(|r| u64::from(r.losers_killed)).sum(),
        winners_killed: reports.iter().map(|r| u64::from(r.winners_killed)).sum(),
        crash_sites,
        assertions,
        passed,
    }
}

fn secs(ms: u64) -> String {
    format!("{}.{:03} s", ms / 1000, ms % 1000)
}

/// The human-readable table.
pub fn render(s: &Summary, duration_s: u64) -> String {
    let mut out = String::new();
    let w = &mut out;
    let driver = match s.driver {
        crate::scenario::Driver::Turmoil => "turmoil",
        crate::scenario::Driver::Event => "event driver",
    };
    let _ = writeln!(w, "scenario    {} ({} seeds x {} s simulated, {driver})", s.scenario, s.seeds, duration_s);
    let _ = writeln!(
        w,
        "mttr        p50 {}   p99 {}   max {}   over {} container losses",
        secs(s.mttr_ms.p50),
        secs(s.mttr_ms.p99),
        secs(s.mttr_ms.max),
        s.crashes
    );
    let f = &s.faults;
    let _ = writeln!(
        w,
        "faults      {} partitions worker<->db, {} worker<->ads, {} timeout storms, {} API timeouts, {} rate limits, {} acks without effect",
        f.db_partitions, f.ads_partitions, f.timeout_storms, f.api_timeouts, f.rate_limits, f.acks_without_effect
    );
    if f.partial_batches + f.stale_reads > 0 {
        let _ = writeln!(
            w,
            "            {} batch pauses carried out only in part, {} stale read-backs",
            f.partial_batches, f.stale_reads
        );
    }
    if s.kills_by_brand.len() > 1 || f.revoked_refusals > 0 {
        let per: Vec<String> = s.kills_by_brand.iter().map(|(b, n)| format!("{b} {n}")).collect();
        let _ = writeln!(
            w,
            "brands      kills {}; {} calls refused to revoked accounts",
            per.join(", "),
            f.revoked_refusals
        );
    }
    let n = &s.seeds_with;
    let _ = writeln!(
        w,
        "seeds with  container loss {}, db partition {}, ads partition {}, storm {}, API timeout {}, rate limit {}, ack without effect {}, partial batch {}, stale read {}, webhook lie {}",
        n.crashes,
        n.db_partitions,
        n.ads_partitions,
        n.timeout_storms,
        n.api_timeouts,
        n.rate_limits,
        n.acks_without_effect,
        n.partial_batches,
        n.stale_reads,
        n.webhook_lies
    );
    if f.webhooks_true + f.webhook_lies > 0 {
        let _ = writeln!(
            w,
            "webhooks    {} true, {} lies, {} duplicated, {} deliveries lost; {} kills committed by their read-back",
            f.webhooks_true, f.webhook_lies, f.webhook_duplicates, f.webhooks_lost, s.webhook_commits
        );
    }
    if s.payouts + s.payables_refused + f.bank_timeouts + f.bank_rate_limits > 0 {
        let _ = writeln!(
            w,
            "payouts     {} committed ({} reverted later, booked), {} abandoned, {} payables refused; bank: {} requests lost, {} replies lost after the payment, {} rate limits, {} 5xx, {} duplicate-request errors",
            s.payouts,
            s.payouts_reversed,
            s.payouts_abandoned,
            s.payables_refused,
            f.bank_timeouts,
            f.bank_lost_replies,
            f.bank_rate_limits,
            f.bank_server_errors,
            f.bank_duplicate_requests
        );
    }
    if s.escalations > 0 {
        let _ = writeln!(
            w,
            "escalation  {} ad sets or campaigns paused in {} seeds, {} resumed; {} still paused at the end (held for an unconfirmed kill, or in the run's last moments)",
            s.escalations, s.seeds_with_escalation, s.resumes, s.collateral_held
        );
    }
    if s.refunds + s.claims_refused + f.shop_throttled + f.shop_lost_replies > 0 {
        let _ = writeln!(
            w,
            "refunds     {} committed, {} abandoned, {} claims refused ({} of honest customers); ring claims refunded before the ring was caught: {} at most per seed; shop: {} requests lost, {} replies lost after the refund, {} throttled, {} 5xx",
            s.refunds,
            s.refunds_abandoned,
            s.claims_refused,
            s.honest_refused,
            s.ring_refunds_before_caught_max,
            f.shop_timeouts,
            f.shop_lost_replies,
            f.shop_throttled,
            f.shop_server_errors
        );
    }
    if s.messages > 0 {
        let calls: Vec<String> =
            s.model_calls.iter().map(|(v, (ok, failed))| format!("{v} {ok} answered, {failed} failed")).collect();
        let _ = writeln!(
            w,
            "support     {} messages, {} replies committed ({} to messages with manipulation signals), {} accepted offers refunded; model calls: {}{}; inbox: {} requests lost, {} replies lost after the send, {} rate limited, {} 5xx",
            s.messages,
            s.replies,
            s.replies_flagged,
            s.offer_refunds,
            if calls.is_empty() { "none".to_string() } else { calls.join(", ") },
            match s.model_calls_refused {
                0 => String::new(),
                n => format!(", {n} refused by the model caps"),
            },
            f.inbox_timeouts,
            f.inbox_lost_replies,
            f.inbox_rate_limits,
            f.inbox_server_errors
        );
    }
    let _ = writeln!(w, "leak        {} cents", s.leak_cents);
    let _ = writeln!(w, "kills       {} ({} losers, {} winners)", s.kills, s.losers_killed, s.winners_killed);
    if s.model_cents > 0 {
        let _ = writeln!(w, "scans       model spend {} cents (worst seed {})", s.model_cents, s.model_cents_seed_max);
    }
    if s.seeds_with_breaker_open > 0 {
        let open: Vec<String> = s.breakers_by_schedule.iter().map(|(k, n)| format!("{k} in {n}")).collect();
        let _ = writeln!(w, "breakers    open at the end in {} seeds: {}", s.seeds_with_breaker_open, open.join(", "));
    }
    let sites: Vec<String> = s.crash_sites.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(w, "crash sites {}", if sites.is_empty() { "none".into() } else { sites.join(", ") });
    let _ = writeln!(w, "violations  {}", s.violations.len());
    for v in s.violations.iter().take(20) {
        let _ = writeln!(w, "  seed {} {}: {}", v.seed, v.invariant, v.detail);
    }
    if s.violations.len() > 20 {
        let _ = writeln!(w, "  … {} more (see --json)", s.violations.len() - 20);
    }
    let _ = writeln!(w, "assertions");
    for a in &s.assertions {
        let _ = writeln!(w, "  {:<4} {} {} (actual {})", if a.ok { "ok" } else { "FAIL" }, a.name, a.limit, a.actual);
    }
    for cmd in &s.reproduce {
        let _ = writeln!(w, "reproduce: {cmd}");
    }
    let _ = writeln!(w, "{}", if s.passed { "PASSED" } else { "FAILED" });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_table() {
        assert_eq!(percentiles(&[]), Percentiles::default());
        assert_eq!(percentiles(&[5]), Percentiles { p50: 5, p99: 5, max: 5 });
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentiles(&v), Percentiles { p50: 50, p99: 99, max: 100 });
        let v: Vec<u64> = (1..=200).rev().collect();
        assert_eq!(percentiles(&v), Percentiles { p50: 100, p99: 198, max: 200 });
    }
}
