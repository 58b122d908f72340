//! The `dlft` command line, end to end: output contracts, exit codes, and
//! clear refusals of bad input.

use std::path::{Path, PathBuf};
use std::process::Output;

const SCENARIO: &str = "scenarios/ad-kill-container-loss.toml";

mod common;
use common::dlft;

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn scratch(name: &str, contents: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn json_summary_has_the_promised_fields() {
    let out = dlft(&["sim", "run", SCENARIO, "--seeds", "0..2", "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(v["scenario"], "ad-kill-container-loss");
    assert_eq!(v["seeds"], 2);
    for k in ["p50", "p99", "max"] {
        assert!(v["mttr_ms"][k].as_u64().unwrap() > 0, "mttr_ms.{k}");
    }
    assert_eq!(v["leak_cents"], 0);
    assert_eq!(v["violations"], serde_json::json!([]));
    let digests = v["digests"].as_object().unwrap();
    assert_eq!(digests.len(), 2);
    assert!(digests["0"].as_str().unwrap().len() == 64, "hex sha-256");
}

#[test]
fn table_output_and_determinism_check() {
    let out = dlft(&["sim", "run", SCENARIO, "--seed", "5"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("mttr") && stdout.contains("PASSED"), "{stdout}");
    let out = dlft(&["sim", "run", SCENARIO, "--seed", "5", "--check-determinism"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("deterministic") && !stdout.contains("NOT"), "{stdout}");
}

#[test]
fn a_failing_run_exits_non_zero_and_prints_how_to_reproduce() {
    let out = dlft(&["sim", "run", SCENARIO, "--seeds", "0..3", "--sabotage", "skip-intent"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("FAIL"), "{stdout}");
    let line = stderr.lines().find(|l| l.starts_with("reproduce: dlft sim run ")).expect("a reproduce line");
    assert!(line.ends_with("--sabotage skip-intent"), "{line}");
    // The printed command reproduces the failure.
    let args: Vec<&str> = line.trim_start_matches("reproduce: dlft ").split(' ').collect();
    let again = dlft(&args);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again).0);
}

#[test]
fn bad_seed_ranges_are_refused() {
    for (range, fragment) in [("5..5", "empty"), ("9..3", "reversed"), ("a..3", "not a seed"), ("7", "A..B")] {
        let out = dlft(&["sim", "run", SCENARIO, "--seeds", range]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{range}: {stderr}");
        assert!(stderr.contains(fragment), "{range}: {stderr}");
    }
}

#[test]
fn malformed_scenarios_name_file_line_and_field() {
    let good = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(SCENARIO)).unwrap();
    let cases = [
        (
            "unknown.toml",
            good.replacen("ads = 24", "ads = 24\nbrands = 2", 1),
            "field `world.brands`",
            "unknown field `brands`",
        ),
        ("type.toml", good.replacen("tick_ms = 10", "tick_ms = \"fast\"", 1), "field `run.tick_ms`", "invalid type"),
        ("range.toml", good.replacen("crashes = [2, 4]", "crashes = [4, 2]", 1), "field `faults.crashes`", "reversed"),
    ];
    for (name, contents, field, fragment) in cases {
        let path = scratch(name, &contents);
        let out = dlft(&["sim", "run", path.to_str().unwrap(), "--seed", "0"]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&format!("{name}:")), "names the file: {stderr}");
        assert!(stderr.contains(field), "names the field: {stderr}");
        assert!(stderr.contains(fragment), "{stderr}");
        let line_no = stderr.split(&format!("{name}:")).nth(1).unwrap().split(':').next().unwrap();
        assert!(line_no.parse::<usize>().is_ok(), "names the line: {stderr}");
    }
    let out = dlft(&["sim", "run", "no/such/file.toml", "--seed", "0"]);
    assert!(text(&out).1.contains("no/such/file.toml"));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_bad_hold_site_is_refused_before_the_store_is_touched() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-hold");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("never.db");
    let config = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dlft.sandbox.toml"))
        .unwrap()
        .replace("sqlite://dlft.db", &format!("sqlite://{}", db.display()));
    let config = scratch("hold.toml", &config);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dlft"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("META_ACCESS_TOKEN", "x")
        .env("DLFT_HOLD_AT", "kill_after_lunch")
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert!(!out.status.success());
    assert!(err.contains("DLFT_HOLD_AT=\"kill_after_lunch\" is not a probe site"), "{err}");
    assert!(err.contains("kill_after_pause"), "the valid sites are listed: {err}");
    assert!(!db.exists(), "no store was created");
}
