//! The scenario library, run as CI runs it: every seed the issues promise,
//! through the real binary, with each scenario's own assertions.

use std::process::Command;

struct Entry {
    file: &'static str,
    seeds: &'static str,
    /// Faults are injected: each planned kind must actually have happened.
    faulty: bool,
}

const LIBRARY: [Entry; 4] = [
    Entry { file: "scenarios/ad-kill-container-loss.toml", seeds: "0..200", faulty: true },
    Entry { file: "scenarios/brand-day.toml", seeds: "0..200", faulty: false },
    Entry { file: "scenarios/scan-crash-loop.toml", seeds: "0..200", faulty: false },
    Entry { file: "scenarios/two-workers-racing.toml", seeds: "0..200", faulty: true },
];

fn run(file: &str, seeds: &str) -> (bool, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dlft"))
        .args(["sim", "run", file, "--seeds", seeds, "--json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("dlft runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{file}: no JSON ({e}): {stderr}"));
    (out.status.success(), v, stderr)
}

#[test]
fn scenario_library_passes_its_assertions() {
    for Entry { file, seeds, faulty } in LIBRARY {
        let (ok, v, stderr) = run(file, seeds);
        println!(
            "{file} {seeds}: mttr_ms {} leak_cents {} crashes {} kills {}",
            v["mttr_ms"], v["leak_cents"], v["crashes"], v["kills"]
        );
        assert!(ok, "{file}: assertions failed:\n{}\n{stderr}", v["assertions"]);
        assert_eq!(v["seeds"], 200);
        assert_eq!(v["leak_cents"], 0);
        if !faulty {
            continue;
        }
        assert!(v["mttr_ms"]["p99"].as_u64().unwrap() <= 4200);
        assert!(v["crashes"].as_u64().unwrap() >= 200, "container loss was injected");
        // Every kind of fault the scenario plans actually happened somewhere.
        for kind in
            ["db_partitions", "ads_partitions", "timeout_storms", "api_timeouts", "rate_limits", "acks_without_effect"]
        {
            assert!(v["faults"][kind].as_u64().unwrap() > 0, "{file}: no {kind} over {seeds}");
        }
        // And container loss hit every probe site between the kill's phases.
        let sites = v["crash_sites"].as_object().unwrap();
        for site in ["kill_before_pause", "kill_after_pause", "kill_after_applied", "kill_after_read_back"] {
            assert!(sites.get(site).and_then(|n| n.as_u64()).unwrap_or(0) > 0, "{file}: no crash at {site}");
        }
    }
}
