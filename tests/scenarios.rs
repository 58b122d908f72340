//! The scenario library, run as CI runs it: every seed the issues promise,
//! through the real binary, with each scenario's own assertions, plus proof
//! that the faults each scenario is about actually happened.

use std::process::Command;

struct Entry {
    file: &'static str,
    /// `faults.*` counters that must be positive over the run.
    must_happen: &'static [&'static str],
    /// Probe sites where a container must have died at least once.
    must_crash_at: &'static [&'static str],
}

const KILL_PHASES: &[&str] = &["kill_before_pause", "kill_after_pause", "kill_after_applied", "kill_after_read_back"];
const ALL_FAULTS: &[&str] = &[
    "crashes",
    "db_partitions",
    "ads_partitions",
    "timeout_storms",
    "api_timeouts",
    "rate_limits",
    "acks_without_effect",
];

const SEEDS: &str = "0..200";

const LIBRARY: &[Entry] = &[
    Entry { file: "scenarios/ad-kill-container-loss.toml", must_happen: ALL_FAULTS, must_crash_at: KILL_PHASES },
    Entry { file: "scenarios/brand-day.toml", must_happen: &[], must_crash_at: &[] },
    Entry { file: "scenarios/scan-crash-loop.toml", must_happen: &["crashes"], must_crash_at: &["scan_after_summary"] },
    Entry { file: "scenarios/two-workers-racing.toml", must_happen: ALL_FAULTS, must_crash_at: KILL_PHASES },
    Entry { file: "scenarios/swarm.toml", must_happen: ALL_FAULTS, must_crash_at: KILL_PHASES },
    Entry { file: "scenarios/partitions.toml", must_happen: &["db_partitions", "ads_partitions"], must_crash_at: &[] },
    Entry {
        file: "scenarios/timeout-storm.toml",
        must_happen: &["timeout_storms", "api_timeouts"],
        must_crash_at: &[],
    },
    Entry { file: "scenarios/stale-reads.toml", must_happen: &["acks_without_effect"], must_crash_at: &[] },
    Entry {
        file: "scenarios/pipeline-phase-loss.toml",
        must_happen: &["crashes"],
        must_crash_at: &["scan_after_fetch", "scan_after_summary", "kill_after_pause", "kill_after_read_back"],
    },
    Entry {
        file: "scenarios/partial-pause.toml",
        must_happen: &["partial_batches", "acks_without_effect", "api_timeouts", "crashes"],
        must_crash_at: &["tick_after_batch_pause", "tick_after_decide", "kill_after_pause"],
    },
    Entry {
        file: "scenarios/webhook-lies.toml",
        must_happen: &["webhooks_true", "webhook_lies", "webhook_duplicates", "acks_without_effect", "crashes"],
        must_crash_at: &[],
    },
];

fn check(entry: &Entry) {
    let Entry { file, must_happen, must_crash_at } = entry;
    let out = Command::new(env!("CARGO_BIN_EXE_dlft"))
        .args(["sim", "run", file, "--seeds", SEEDS, "--json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("dlft runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{file}: no JSON ({e}): {stderr}"));
    println!(
        "{file} {SEEDS}: mttr_ms {} leak_cents {} crashes {} kills {}",
        v["mttr_ms"], v["leak_cents"], v["crashes"], v["kills"]
    );
    assert!(out.status.success(), "{file}: assertions failed:\n{}\n{stderr}", v["assertions"]);
    assert_eq!(v["seeds"], 200);
    assert_eq!(v["leak_cents"], 0);
    for kind in *must_happen {
        assert!(v["faults"][kind].as_u64().unwrap() > 0, "{file}: no {kind} over {SEEDS}");
    }
    let sites = v["crash_sites"].as_object().unwrap();
    for site in *must_crash_at {
        assert!(sites.get(*site).and_then(|n| n.as_u64()).unwrap_or(0) > 0, "{file}: no crash at {site}");
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
    };
}

scenario_tests! {
    ad_kill_container_loss => "ad-kill-container-loss.toml",
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
}
