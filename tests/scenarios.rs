//! The scenario library, run as CI runs it: every seed the issues promise,
//! through the real binary, with each scenario's own assertions, plus proof
//! that the faults each scenario is about actually happened.

use std::process::Command;

struct Entry {
    file: &'static str,
    driver: &'static str,
    seeds: u64,
    /// In how many seeds each of `must_happen` must have happened, and a
    /// container must have died at each of `must_crash_at`.
    happen_in: u64,
    crash_in: u64,
    /// Kinds of fault (`seeds_with` keys) that must have happened.
    must_happen: &'static [&'static str],
    /// Probe sites where a container must have died.
    must_crash_at: &'static [&'static str],
}

const KILL_PHASES: &[&str] = &["kill_before_pause", "kill_after_pause", "kill_after_applied", "kill_after_read_back"];
/// Every fault class, each to happen in at least [`EVERY_CLASS_SEEDS`] seeds
/// of `every-fault`; the first seven are [`ALL_FAULTS`].
const EVERY_CLASS: &[&str] = &[
    "crashes",
    "db_partitions",
    "ads_partitions",
    "timeout_storms",
    "api_timeouts",
    "rate_limits",
    "acks_without_effect",
    "partial_batches",
    "stale_reads",
    "webhook_lies",
    "webhook_duplicates",
];
/// Every probe site the ad-kill loop reaches (the scan's sites are `pipeline-phase-loss`'s).
const EVERY_SITE: &[&str] = &[
    "tick_after_page",
    "tick_after_decide",
    "tick_after_batch_pause",
    "kill_before_pause",
    "kill_after_pause",
    "kill_after_applied",
    "kill_after_read_back",
    "before_finish",
];
/// The payouts' probe sites: between every payout phase and between the
/// payables job's writes.
const PAYOUT_PHASES: &[&str] = &[
    "payout_before_pay",
    "payout_after_pay",
    "payout_after_applied",
    "payout_after_read_back",
    "payables_after_open",
    "payables_before_settle",
];
/// The refunds' probe sites: between every refund phase and between the
/// refund job's writes.
const REFUND_PHASES: &[&str] = &[
    "refund_before_call",
    "refund_after_call",
    "refund_after_applied",
    "refund_after_read_back",
    "refunds_after_open",
    "refunds_before_settle",
];
/// Everything the shop does wrong in `refund-container-loss`.
const SHOP_FAULTS: &[&str] = &["shop_timeouts", "shop_lost_replies", "shop_throttled", "shop_server_errors", "crashes"];
/// The reply's probe sites: between every phase of a support reply.
const REPLY_PHASES: &[&str] =
    &["reply_before_send", "reply_after_send", "reply_after_applied", "reply_after_read_back"];
/// Everything the inbox does wrong in the support scenarios.
const INBOX_FAULTS: &[&str] = &["inbox_timeouts", "inbox_lost_replies", "inbox_rate_limits", "inbox_server_errors"];
/// Everything the bank does wrong in `bank-chaos`.
const BANK_FAULTS: &[&str] = &[
    "bank_timeouts",
    "bank_lost_replies",
    "bank_rate_limits",
    "bank_server_errors",
    "bank_duplicate_requests",
    "bank_reversals",
    "crashes",
];
/// `budget-rollover` simulates four days a seed.
const ROLLOVER_SEEDS: u64 = 20;

/// The classes every fault scenario of the ad loop injects: the first seven of [`EVERY_CLASS`].
const ALL_FAULTS: &[&str] = EVERY_CLASS.split_at(7).0;

/// Turmoil's seeds per scenario, where sockets matter.
const TURMOIL_SEEDS: u64 = 200;
/// The event driver's seeds per scenario.
const EVENT_SEEDS: u64 = 200;
/// `every-fault` runs until every fault class has happened in this many seeds.
const EVERY_CLASS_SEEDS: u64 = 10_000;
/// Seeds of `every-fault`: acks without effect, the rarest class there,
/// happen in about 74% of its seeds (measured 372 of 500).
const EVERY_FAULT_SEEDS: u64 = 14_000;

const LIBRARY: &[Entry] = &[
    // turmoil: simulated TCP, where sockets matter.
    Entry {
        file: "scenarios/ad-kill-container-loss.toml",
        driver: "turmoil",
        seeds: TURMOIL_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: ALL_FAULTS,
        must_crash_at: KILL_PHASES,
    },
    Entry {
        file: "scenarios/partitions.toml",
        driver: "turmoil",
        seeds: TURMOIL_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: &["db_partitions", "ads_partitions"],
        must_crash_at: &[],
    },
    Entry {
        file: "scenarios/webhook-lies.toml",
        driver: "turmoil",
        seeds: TURMOIL_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: &["webhooks_true", "webhook_lies", "webhook_duplicates", "acks_without_effect", "crashes"],
        must_crash_at: &[],
    },
    // The event driver.
    Entry {
        file: "scenarios/every-fault.toml",
        driver: "event",
        seeds: EVERY_FAULT_SEEDS,
        happen_in: EVERY_CLASS_SEEDS,
        crash_in: EVERY_FAULT_SEEDS / 10,
        must_happen: EVERY_CLASS,
        must_crash_at: EVERY_SITE,
    },
    Entry {
        file: "scenarios/brand-day.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: &[],
        must_crash_at: &[],
    },
    Entry {
        file: "scenarios/scan-crash-loop.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: &["crashes"],
        must_crash_at: &["scan_after_summary"],
    },
    Entry {
        file: "scenarios/two-workers-racing.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: ALL_FAULTS,
        must_crash_at: KILL_PHASES,
    },
    Entry {
        file: "scenarios/swarm.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: ALL_FAULTS,
        must_crash_at: KILL_PHASES,
    },
    Entry {
        file: "scenarios/timeout-storm.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: &["timeout_storms", "api_timeouts"],
        must_crash_at: &[],
    },
    Entry {
        file: "scenarios/stale-reads.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: &["acks_without_effect", "stale_reads"],
        must_crash_at: &[],
    },
    Entry {
        file: "scenarios/pipeline-phase-loss.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: &["crashes"],
        must_crash_at: &["scan_after_fetch", "scan_after_summary", "kill_after_pause", "kill_after_read_back"],
    },
    Entry {
        file: "scenarios/partial-pause.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: &["partial_batches", "acks_without_effect", "api_timeouts", "crashes"],
        must_crash_at: &["tick_after_batch_pause", "tick_after_decide", "kill_after_pause"],
    },
    Entry {
        file: "scenarios/multi-brand.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: &[
            "crashes",
            "db_partitions",
            "ads_partitions",
            "timeout_storms",
            "api_timeouts",
            "rate_limits",
            "revoked_refusals",
        ],
        must_crash_at: KILL_PHASES,
    },
    Entry {
        file: "scenarios/payout-container-loss.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: &["crashes", "db_partitions", "ads_partitions"],
        must_crash_at: PAYOUT_PHASES,
    },
    Entry {
        file: "scenarios/bank-chaos.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: BANK_FAULTS,
        must_crash_at: PAYOUT_PHASES,
    },
    Entry {
        file: "scenarios/budget-race.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: &["crashes", "db_partitions"],
        must_crash_at: &["payout_after_pay", "payables_after_open"],
    },
    Entry {
        file: "scenarios/refund-container-loss.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: SHOP_FAULTS,
        must_crash_at: REFUND_PHASES,
    },
    Entry {
        file: "scenarios/refund-throttle-storm.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        // Lost replies hit refundCreate only, which the tight cap makes
        // rare: 194 of 200 seeds saw one (measured); throttling all 200.
        happen_in: 1,
        crash_in: 1,
        must_happen: &["shop_throttled", "shop_lost_replies"],
        must_crash_at: &[],
    },
    Entry {
        file: "scenarios/refund-ring.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: &[],
        must_crash_at: &[],
    },
    Entry {
        file: "scenarios/late-chargebacks.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: &["crashes", "shop_server_errors"],
        must_crash_at: &[],
    },
    // Kill escalation: ad-level pauses acknowledged without effect 25%
    // (the sandbox's own world), 50% and 90% of the time.
    Entry {
        file: "scenarios/sandbox.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: &["acks_without_effect"],
        must_crash_at: &[],
    },
    Entry {
        file: "scenarios/escalation-50.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: &["acks_without_effect", "crashes"],
        must_crash_at: KILL_PHASES,
    },
    Entry {
        file: "scenarios/escalation-90.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        // Acks without effect at 90%: every seed with a kill sees them.
        happen_in: EVENT_SEEDS - 5,
        crash_in: 1,
        must_happen: &["acks_without_effect"],
        must_crash_at: &[],
    },
    // Support: a compromised model, a vendor down, container loss.
    Entry {
        file: "scenarios/support-hostile.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        // Every seed of 200 saw each inbox fault but one (a lost reply
        // after a send: 199), and model failures in all (measured).
        happen_in: EVENT_SEEDS - 5,
        crash_in: 1,
        must_happen: &["inbox_timeouts", "inbox_rate_limits", "inbox_server_errors", "model_failures"],
        must_crash_at: &[],
    },
    Entry {
        file: "scenarios/model-outage.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        happen_in: EVENT_SEEDS,
        crash_in: 1,
        must_happen: &["model_failures"],
        must_crash_at: &[],
    },
    Entry {
        file: "scenarios/model-budget.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: &[],
        must_crash_at: &[],
    },
    Entry {
        file: "scenarios/support-container-loss.toml",
        driver: "event",
        seeds: EVENT_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: INBOX_FAULTS,
        must_crash_at: REPLY_PHASES,
    },
    Entry {
        file: "scenarios/budget-rollover.toml",
        driver: "event",
        seeds: ROLLOVER_SEEDS,
        happen_in: 1,
        crash_in: 1,
        must_happen: &["crashes"],
        must_crash_at: &[],
    },
];

/// Per scenario of several brands: the brands that must have killed losers
/// (every seed's checker judged them unharmed besides), and those whose
/// account was revoked, which must have killed nothing.
const BRANDS: &[(&str, &[&str], &[&str])] = &[("scenarios/multi-brand.toml", &["north", "south"], &["east", "west"])];

/// Per scenario whose breaker must trip: the one schedule it disables, in
/// every seed (and no other schedule, in any seed).
const BREAKERS: &[(&str, &str)] =
    &[("scenarios/multi-brand.toml", "west/insights-tick"), ("scenarios/scan-crash-loop.toml", "scan/page-2")];

/// Scenarios whose kills must escalate (in some seed) and resume.
const ESCALATING: &[&str] = &[
    "scenarios/sandbox.toml",
    "scenarios/escalation-50.toml",
    "scenarios/escalation-90.toml",
    "scenarios/partial-pause.toml",
];

fn check(entry: &Entry) {
    let Entry { file, driver, seeds, happen_in, crash_in, must_happen, must_crash_at } = entry;
    let range = format!("0..{seeds}");
    let out = Command::new(env!("CARGO_BIN_EXE_dlft"))
        .args(["sim", "run", file, "--seeds", &range, "--json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("dlft runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{file}: no JSON ({e}): {stderr}"));
    println!(
        "{file} {range} on {}: mttr_ms {} leak_cents {} crashes {} kills {}\n  seeds with each fault: {}\n  seeds with a crash at each site: {}",
        v["driver"], v["mttr_ms"], v["leak_cents"], v["crashes"], v["kills"], v["seeds_with"], v["seeds_with_crash_at"]
    );
    assert!(out.status.success(), "{file}: assertions failed:\n{}\n{}\n{stderr}", v["assertions"], v["reproduce"]);
    assert_eq!(v["driver"], *driver, "{file} runs on the driver the library says");
    assert_eq!(v["seeds"], *seeds);
    assert_eq!(v["leak_cents"], 0);
    // Proof the bad paths ran: each class in 10,000 of `every-fault`'s seeds,
    // in at least one seed of the others.
    for kind in *must_happen {
        let n = v["seeds_with"][kind].as_u64().unwrap();
        assert!(n >= *happen_in, "{file}: {kind} happened in {n} of {seeds} seeds (at least {happen_in} wanted)");
    }
    for site in *must_crash_at {
        let n = v["seeds_with_crash_at"][site].as_u64().unwrap_or(0);
        assert!(n >= *crash_in, "{file}: a crash at {site} in {n} seeds (at least {crash_in} wanted)");
    }
    for (_, killing, idle) in BRANDS.iter().filter(|(f, _, _)| f == file) {
        let kills = &v["kills_by_brand"];
        for b in *killing {
            let n = kills[b].as_u64().unwrap_or(0);
            assert!(n >= *seeds, "{file}: brand {b} killed {n} times in {seeds} seeds: {kills}");
        }
        for b in *idle {
            assert!(kills[b].is_null(), "{file}: brand {b}, out of the loop's reach, killed: {kills}");
        }
    }
    if ESCALATING.contains(file) {
        let n = v["seeds_with_escalation"].as_u64().unwrap();
        assert!(n > 0, "{file}: no ad set or campaign was paused in {seeds} seeds");
        assert!(v["resumes"].as_u64().unwrap() > 0, "{file}: nothing resumed");
    }
    for (_, schedule) in BREAKERS.iter().filter(|(f, _)| f == file) {
        let open = &v["breakers_by_schedule"];
        let want = serde_json::json!({ *schedule: *seeds });
        assert_eq!(*open, want, "{file}: the breaker opened {open}, not only {schedule} in every seed");
    }
}

fn entry(file: &str) -> &'static Entry {
    LIBRARY.iter().find(|e| e.file.ends_with(file)).expect("in the library")
}

macro_rules! scenario_tests {
    ($($name:ident => $file:literal),* $(,)?) => {
        $(#[test] fn $name() { check(entry($file)); })*

        /// Every scenario in the library has its test.
        #[test]
        fn every_library_entry_is_tested() {
            let tested = [$($file),*];
            for e in LIBRARY {
                assert!(tested.iter().any(|t| e.file.ends_with(t)), "{} has no test", e.file);
            }
        }

        /// No scenario file is silently left out of CI: each is in the
        /// library, with the seeds and the faults it must show.
        #[test]
        fn every_scenario_file_is_in_the_library() {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| format!("scenarios/{}", e.unwrap().file_name().to_string_lossy()))
                .filter(|f| f.ends_with(".toml"))
                .collect();
            files.sort();
            assert!(files.len() >= LIBRARY.len());
            for f in &files {
                let listed = LIBRARY.iter().any(|e| e.file == f);
                assert!(listed, "{f} is not in the library of tests/scenarios.rs: every scenario file runs in CI");
            }
            for e in LIBRARY {
                assert!(files.contains(&e.file.to_string()), "{} is listed but missing", e.file);
            }
        }
    };
}

scenario_tests! {
    ad_kill_container_loss => "ad-kill-container-loss.toml",
    every_fault => "every-fault.toml",
    brand_day => "brand-day.toml",
    scan_crash_loop => "scan-crash-loop.toml",
    two_workers_racing => "two-workers-racing.toml",
    swarm => "swarm.toml",
    partitions => "partitions.toml",
    timeout_storm => "timeout-storm.toml",
    stale_reads => "stale-reads.toml",
    pipeline_phase_loss => "pipeline-phase-loss.toml",
    partial_pause => "partial-pause.toml",
    webhook_lies => "webhook-lies.toml",
    multi_brand => "multi-brand.toml",
    payout_container_loss => "payout-container-loss.toml",
    bank_chaos => "bank-chaos.toml",
    budget_race => "budget-race.toml",
    budget_rollover => "budget-rollover.toml",
    refund_container_loss => "refund-container-loss.toml",
    refund_throttle_storm => "refund-throttle-storm.toml",
    refund_ring => "refund-ring.toml",
    late_chargebacks => "late-chargebacks.toml",
    sandbox => "sandbox.toml",
    escalation_50 => "escalation-50.toml",
    escalation_90 => "escalation-90.toml",
    support_hostile => "support-hostile.toml",
    model_outage => "model-outage.toml",
    model_budget => "model-budget.toml",
    support_container_loss => "support-container-loss.toml",
}
