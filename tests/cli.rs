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
    common::scratch("cli", name, contents)
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

/// `--show-plan` and `--events` are results: on stdout, under a header per
/// seed, in words (no Rust Debug text, times relative to the run's start);
/// stderr stays for diagnostics (no progress bar when it is not a terminal).
#[test]
fn plans_and_event_logs_go_to_stdout_under_a_header_per_seed() {
    let out = dlft(&["sim", "run", SCENARIO, "--seed", "5", "--show-plan", "--events", "--quiet"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "nothing but diagnostics on stderr: {stderr}");
    let plan = stdout.find("== seed 5: fault plan").expect("the plan's header");
    let log = stdout.find("== seed 5: event log").expect("the log's header");
    let results = stdout.find("== seed 5: results").expect("the results' header");
    assert!(plan < log && log < results && results < stdout.find("PASSED").unwrap(), "{stdout}");
    let first = stdout[log..].lines().nth(1).expect("an event line");
    let (_, rest) = first.split_once("  +").expect("a time since the start");
    let (secs, rest) = rest.split_once(" s  ").expect("in seconds");
    assert!(secs.parse::<f64>().is_ok(), "{first}");
    let block_kind = rest.split("  ").next().unwrap();
    assert!(block_kind.contains('/') && block_kind == block_kind.to_lowercase(), "{first}");
    assert!(!stdout.contains("Some(") && !stdout.contains("Scheduler/"), "no Debug text: {first}");
    let out = dlft(&["sim", "run", SCENARIO, "--seed", "5", "--events", "--json"]);
    assert_eq!(out.status.code(), Some(2), "--events is not JSON: {}", text(&out).1);
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
        ("type.toml", good.replacen("ads = 24", "ads = \"many\"", 1), "field `world.ads`", "invalid type"),
        ("time.toml", good.replacen("tick_ms = 10", "tick_ms = \"fast\"", 1), "field `run.tick_ms`", "not a duration"),
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
    // Durations may be written with their unit beside the integer fields:
    // the same run, the same digest.
    let digest = |contents: &str, name: &str| {
        let out = dlft(&["sim", "run", scratch(name, contents).to_str().unwrap(), "--seed", "0", "--json"]);
        assert!(out.status.success(), "{}", text(&out).1);
        serde_json::from_str::<serde_json::Value>(&text(&out).0).unwrap()["digests"]["0"].clone()
    };
    let units =
        good.replacen("duration_s = 1200", "duration_s = \"20m\"", 1).replacen("tick_ms = 10", "tick_ms = \"10ms\"", 1);
    assert_eq!(digest(&units, "units.toml"), digest(&good, "plain.toml"));
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
        .env("REVOLUT_ACCESS_TOKEN", "x")
        .env("DLFT_HOLD_AT", "kill_after_lunch")
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert!(!out.status.success());
    assert!(err.contains("DLFT_HOLD_AT=\"kill_after_lunch\" is not a probe site"), "{err}");
    assert!(err.contains("kill_after_pause"), "the valid sites are listed: {err}");
    assert!(!db.exists(), "no store was created");
}

/// `dlft schedules list --json`: one JSON object per schedule, numbers as
/// numbers and ISO-8601 beside them.
#[test]
fn schedules_list_prints_json_lines() {
    use dlft_core::schedule::task::Task;
    use dlft_core::store::{NewJob, Store};
    use dlft_core::time::Timestamp;
    use dlft_live::store::{PoolOptions, open_sqlite};
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-schedules");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("s.db").display());
    let t0 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let store = open_sqlite(&url, &PoolOptions::default()).await.unwrap();
        let job = NewJob::new(&Task::PollInsights { slot: Timestamp(t0) }, 1, Timestamp(t0), None);
        store.fire_slot("tick", Timestamp(t0), job, Timestamp(t0)).await.unwrap();
    });
    let out = dlft(&["schedules", "list", "--store", &url, "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(
        (v["brand"].as_str(), v["schedule"].as_str(), v["enabled"].as_bool()),
        (Some("default"), Some("tick"), Some(true))
    );
    assert_eq!((v["last_slot"].as_u64(), v["last_slot_iso"].as_str()), (Some(t0), Some("2026-01-01T00:00:00.000Z")));
    let out = dlft(&["schedules", "enable", "tick", "--store", &url, "--json"]);
    let v: serde_json::Value = serde_json::from_str(text(&out).0.trim()).expect("one JSON object");
    assert_eq!((v["schedule"].as_str(), v["was_disabled"].as_bool()), (Some("tick"), Some(false)), "{v}");
    let out = dlft(&["schedules", "enable", "tock", "--store", &url]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("(known: default/tick)"), "{}", text(&out).1);
}

/// `dlft events`: the log of a real store, human-readable (ISO-8601 times,
/// block/kind names, no Rust `Debug` text) or JSON lines with numbers as
/// numbers; filters by entity, kind, block and instant.
#[test]
fn events_prints_the_log_readably_and_filters_it() {
    use dlft_core::ids::WorkerId;
    use dlft_core::schedule::task::Task;
    use dlft_core::store::{NewJob, Store};
    use dlft_core::time::Timestamp;
    use dlft_live::store::{PoolOptions, open_sqlite};
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-events");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("log.db").display());
    let t0 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let store = open_sqlite(&url, &PoolOptions::default()).await.unwrap();
        store.boot(&WorkerId::new("w-1"), Timestamp(t0)).await.unwrap();
        let job = NewJob::new(&Task::PollInsights { slot: Timestamp(t0) }, 1, Timestamp(t0), None);
        store.enqueue(job, Timestamp(t0 + 1_500)).await.unwrap();
    });
    let out = dlft(&["events", "--store", &url]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].contains("2026-01-01T00:00:00.000Z  -  scheduler/worker_booted  w-1"), "{}", lines[0]);
    assert!(
        lines[1].contains("2026-01-01T00:00:01.500Z  default  scheduler/job_enqueued  job#1  none -> available"),
        "{}",
        lines[1]
    );
    assert!(!stdout.contains("Some(") && !stdout.contains("Timestamp("), "no Debug text: {stdout}");
    let out = dlft(&["schedules", "list", "--store", &url]);
    assert!(out.status.success(), "a current store opens read-only: {}", text(&out).1);

    let out = dlft(&["events", "--store", &url, "--json", "--kind", "job_enqueued"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!((v["seq"].as_u64(), v["at"].as_u64()), (Some(2), Some(t0 + 1_500)));
    assert_eq!(v["at_iso"], "2026-01-01T00:00:01.500Z");
    for (flag, value, lines) in [
        ("--entity", "w-1", 1),
        ("--block", "Scheduler", 2),
        ("--block", "actuator", 0),
        ("--since", "2026-01-01T00:00:01Z", 1),
        ("--since", "1767225600000", 2),
        ("--brand", "default", 1),
        ("--brand", "acme", 0),
    ] {
        let out = dlft(&["events", "--store", &url, flag, value]);
        assert!(out.status.success(), "{flag} {value}");
        assert_eq!(text(&out).0.lines().count(), lines, "{flag} {value}");
    }
}

/// `dlft budgets`: each brand's caps where they stand (the current period in
/// the brand's time zone: reserved, posted, left), every account with
/// `--history`, JSON lines with `--json`; an unknown brand is named.
#[test]
fn budgets_shows_caps_reserved_posted_and_left() {
    use dlft_core::act::intent::{Action, Evidence, IntentOp, IntentPhase, NewIntent};
    use dlft_core::envelope::budget::{Budgets, Cap, Purpose, Reserve, Window, Zone};
    use dlft_core::envelope::{Decision, Verdict};
    use dlft_core::estimate::estimator::AdEstimate;
    use dlft_core::ids::{AdId, BrandId, IdempotencyKey, WorkerId};
    use dlft_core::money::{Currency, Money};
    use dlft_core::schedule::task::{JobKind, Task};
    use dlft_core::store::{ClaimRequest, NewJob, Store, WriteBatch};
    use dlft_core::time::{Millis, Timestamp};
    use dlft_live::store::{PoolOptions, open_sqlite};
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-budgets");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("budgets.db").display());
    let t0 = Timestamp(1_796_248_800_000); // 2026-12-02T22:00:00Z: 23:00 in Berlin
    let eur = |minor| Money::new(minor, Currency::EUR);
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let store = open_sqlite(&url, &PoolOptions::default()).await.unwrap();
        let caps = vec![
            Cap::brand(Purpose::Payout, Window::Daily, eur(150_000)),
            Cap::brand(Purpose::Payout, Window::Monthly, eur(2_000_000)),
            Cap { counterparty: Some("cp-1".into()), ..Cap::brand(Purpose::Payout, Window::Daily, eur(50_000)) },
        ];
        let budgets = Budgets::new(Zone::parse("Europe/Berlin").unwrap(), caps).unwrap();
        store.set_budgets(&BrandId::default(), &budgets, t0).await.unwrap();
        let inc = store.boot(&WorkerId::new("w"), t0).await.unwrap().incarnation;
        store.enqueue(NewJob::new(&Task::PollInsights { slot: t0 }, 0, t0, None), t0).await.unwrap();
        let req = ClaimRequest {
            brands: vec![BrandId::default()],
            worker: WorkerId::new("w"),
            incarnation: inc,
            kinds: vec![JobKind::PollInsights],
            limit: 1,
            lease_for: Millis(60_000),
        };
        let c = store.claim(&req, t0).await.unwrap().remove(0);
        let open = |key: &str, minor, payee: &str| {
            let ad = AdId::new(key);
            let key = IdempotencyKey::new(key);
            let e = AdEstimate {
                ad: ad.clone(),
                first_bucket: t0,
                matured_until: t0,
                matured_spend: eur(0),
                matured_purchases: 0,
                matured_revenue: eur(0),
                in_learning: false,
            };
            let verdict =
                Verdict { ad: ad.clone(), key: key.clone(), decision: Decision::Approve, at: t0, reason: "".into() };
            IntentOp::Open(NewIntent {
                key,
                action: Action::KillAd { ad },
                evidence: Evidence::Kill(e),
                verdict,
                reserve: Some(Reserve {
                    purpose: Purpose::Payout,
                    amount: eur(minor),
                    counterparty: Some(payee.into()),
                }),
            })
        };
        let step = |from, to, amount| IntentOp::Advance {
            key: IdempotencyKey::new("pay/1"),
            from,
            to,
            count_attempt: true,
            cause: "t".into(),
            amount,
        };
        let ops = vec![
            open("pay/1", 40_000, "cp-1"),
            open("pay/2", 25_000, "cp-2"),
            step(IntentPhase::Intended, IntentPhase::Applied, None),
            step(IntentPhase::Applied, IntentPhase::Committed, Some(eur(40_000))),
        ];
        store.write(&c.lease, WriteBatch { intents: ops, ..WriteBatch::default() }, t0).await.unwrap();
        // A claims review that completed: the claims sensor's last read.
        store.enqueue(NewJob::new(&Task::ReviewClaims { slot: t0 }, 0, t0, None), t0).await.unwrap();
        let review = ClaimRequest { kinds: vec![JobKind::ReviewClaims], ..req };
        let r = store.claim(&review, t0).await.unwrap().remove(0);
        store.finish(&r.lease, dlft_core::store::Outcome::Completed, Vec::new(), t0).await.unwrap();
    });
    let out = dlft(&["budgets", "--store", &url, "--at", "2026-12-02T22:00:00Z"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert_eq!(
        lines[0],
        "default (Europe/Berlin: payout daily 1500.00 EUR, payout daily cp-1 500.00 EUR, payout monthly 20000.00 EUR)"
    );
    for (line, want) in [
        (lines[1], "payout daily 2026-12-02 cap 1500.00 EUR reserved 250.00 EUR posted 400.00 EUR left 850.00 EUR"),
        // The payee's own cap holds only what was paid to it.
        (lines[2], "payout daily cp-1 2026-12-02 cap 500.00 EUR reserved 0.00 EUR posted 400.00 EUR left 100.00 EUR"),
        (lines[3], "payout monthly 2026-12 cap 20000.00 EUR reserved 250.00 EUR posted 400.00 EUR left 19350.00 EUR"),
    ] {
        assert_eq!(line.split_whitespace().collect::<Vec<_>>().join(" "), want);
    }
    // An hour later it is 3 December in Berlin: a fresh day, the same month.
    let out = dlft(&["budgets", "--store", &url, "--at", "2026-12-02T23:00:00Z", "--json"]);
    let rows: Vec<serde_json::Value> =
        text(&out).0.lines().map(|l| serde_json::from_str(l).expect("JSON lines")).collect();
    assert_eq!(rows[0]["period"], "2026-12-03");
    assert_eq!(
        (rows[0]["left"]["minor"].as_i64(), rows[2]["left"]["minor"].as_i64()),
        (Some(150_000), Some(1_935_000))
    );
    assert_eq!((rows[1]["counterparty"].as_str(), rows[0]["counterparty"].as_str()), (Some("cp-1"), None));
    let out = dlft(&["budgets", "--store", &url, "--history"]);
    assert_eq!(text(&out).0.lines().count(), 3, "one account per cap and period: {}", text(&out).0);
    let out = dlft(&["budgets", "--store", &url, "--brand", "north"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("brand north declared no budgets"), "{}", text(&out).1);

    // `dlft status`: the same store on one screen.
    let out = dlft(&["status", "--store", &url]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let squeezed: Vec<String> = stdout.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    for want in [
        "workers (1)",
        "brand default",
        "intents ad_kill committed 1, open 1, abandoned 0",
        "queue poll_insights running 1",
        "sensor review_claims last read completed 2026-12-02T22:00:00.000Z",
        "leak 0",
    ] {
        assert!(squeezed.iter().any(|l| l.starts_with(want)), "{want:?} not in:\n{stdout}");
    }
    assert!(squeezed.iter().any(|l| l.starts_with("budget payout daily cp-1 ")), "{stdout}");
    let out = dlft(&["status", "--store", &url, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&text(&out).0).expect("one JSON document");
    assert_eq!(v["brands"]["default"]["intents"]["ad_kill"]["committed"], 1, "numbers as numbers: {v}");
    assert_eq!(v["workers"][0]["worker"], "w");
    assert_eq!(v["brands"]["default"]["last_read"]["review_claims"]["at"], "2026-12-02T22:00:00.000Z", "{v}");
    let out = dlft(&["status", "--store", &url, "--brand", "north"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("brand north has nothing in this store"), "{}", text(&out).1);
}

/// Commands that only read never create or migrate a store: a missing
/// SQLite file, a database DLFT never migrated, or a bad flag is one clear
/// line and exit 2, and nothing is created.
#[test]
fn read_only_commands_never_create_a_store() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-readonly");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let typo = dir.join("typo.db");
    let url = format!("sqlite://{}", typo.display());
    for args in [
        vec!["events", "--store", url.as_str()],
        vec!["schedules", "list", "--store", url.as_str()],
        vec!["schedules", "enable", "insights-tick", "--store", url.as_str()],
        vec!["budgets", "--store", url.as_str()],
        vec!["status", "--store", url.as_str()],
    ] {
        let out = dlft(&args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("no store at") && stderr.contains("typo.db"), "{args:?}: {stderr}");
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }
    // An empty file is a valid, empty SQLite database, but not a DLFT store.
    let empty = dir.join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let out = dlft(&["events", "--store", &format!("sqlite://{}", empty.display())]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not a DLFT store"), "{stderr}");
    let out = dlft(&["events", "--store", &format!("sqlite://{}", empty.display()), "--since", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("expected ISO-8601"), "{}", text(&out).1);
    // A server that refuses: one line, its cause said once.
    let out = dlft(&["events", "--store", "postgres://nobody@127.0.0.1:1/x"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(stderr.matches("Connection refused").count(), 1, "each cause once: {stderr}");
}

/// `--check-determinism` runs every seed of `--seeds` twice (it used to
/// check the first seed only and say "deterministic").
#[test]
fn check_determinism_covers_every_seed_of_the_range() {
    let out = dlft(&["sim", "run", SCENARIO, "--seeds", "3..6", "--check-determinism", "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!((v["seeds"].as_u64(), v["deterministic"].as_bool()), (Some(3), Some(true)), "{v}");
    let digests = v["digests"].as_object().unwrap();
    assert_eq!(digests.keys().map(String::as_str).collect::<Vec<_>>(), ["3", "4", "5"]);
    for pair in digests.values() {
        assert_eq!(pair[0], pair[1], "{pair}");
    }
    let out = dlft(&["sim", "run", SCENARIO, "--seeds", "3..5", "--check-determinism"]);
    assert!(text(&out).0.contains("deterministic: 2 seeds"), "{}", text(&out).0);
}

#[test]
fn generating_into_a_non_empty_directory_is_refused() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-generate");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let out = dlft(&["datasets", "generate", "--seed", "1", "--days", "1", "--out", dir.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not empty and not a history catalog") && stderr.contains("notes.txt"), "{stderr}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "nothing was written");
}

/// `--json` on the commands that print results: one JSON document on
/// stdout, numbers as numbers; a failed check still prints its document
/// (and exits 2).
#[test]
fn init_check_migrate_and_datasets_answer_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = |out: &Output| -> serde_json::Value {
        let (stdout, stderr) = text(out);
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not one JSON document ({e}): {stdout}{stderr}"))
    };
    let cfg = dir.path().join("dlft.toml");
    let init = dlft(&["init", cfg.to_str().unwrap(), "--json"]);
    assert!(init.status.success());
    assert_eq!(json(&init)["wrote"], cfg.to_str().unwrap());
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/refund.toml");
    let ok = dlft(&["check", policy.to_str().unwrap(), "--json"]);
    let v = json(&ok);
    assert!(ok.status.success() && v["ok"] == true && v["kind"] == "policy", "{v}");
    // The starter config names secrets this test does not set.
    let failed = dlft(&["check", cfg.to_str().unwrap(), "--json"]);
    let v = json(&failed);
    assert_eq!(failed.status.code(), Some(2), "{v}");
    assert!(v["ok"] == false && v["kind"] == "config" && v["error"].as_str().unwrap().contains("checks failed"), "{v}");
    let meta =
        v["checks"].as_array().unwrap().iter().find(|c| c["what"] == "Meta token").expect("the Meta token check");
    assert!(meta["ok"] == false && meta["detail"].as_str().unwrap().contains("META_ACCESS_TOKEN"), "{meta}");
    let garbage = scratch("garbage.toml", "[[[");
    let v = json(&dlft(&["check", garbage.to_str().unwrap(), "--json"]));
    assert!(v["ok"] == false && v["kind"].is_null() && v["error"].as_str().unwrap().contains("not TOML"), "{v}");
    let store = format!("sqlite://{}", dir.path().join("m.db").display());
    let v = json(&dlft(&["migrate", "--store", &store, "--json"]));
    assert!(v["schema_version"].as_i64().is_some_and(|n| n >= 11), "{v}");
    let out = dir.path().join("h");
    let v =
        json(&dlft(&["datasets", "generate", "--seed", "2", "--days", "1", "--out", out.to_str().unwrap(), "--json"]));
    assert!(v["rows"]["insights"].as_u64().is_some_and(|n| n > 0) && !v["files"].as_array().unwrap().is_empty(), "{v}");
}

/// Long commands draw a progress bar on a terminal (here a pseudo-terminal
/// from `script`), never when stderr is a pipe or with `--quiet`; results
/// stay on stdout either way.
#[test]
fn long_commands_show_progress_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("h");
    let bin = env!("CARGO_BIN_EXE_dlft");
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/refund.toml");
    let on_tty = |args: &str| {
        let out = std::process::Command::new("script")
            .args(["-qec", &format!("{bin} {args}"), "/dev/null"])
            .output()
            .expect("script(1) from bsdutils");
        assert!(out.status.success(), "{args}: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let d = data.display();
    let generated = on_tty(&format!("datasets generate --seed 3 --days 2 --brands 2 --out {d}"));
    // The bar draws at most every few dozen ms: some count of the total.
    assert!(generated.contains(" brands ") && generated.contains("/2 ["), "{generated}");
    let sweep = format!("backtest --data {d} --policy {} --sweep high_cap_cents=0..1000:1000", policy.display());
    let drawn = on_tty(&sweep);
    assert!(drawn.contains(" replays ") && drawn.contains("/4 ["), "2 variants x 2 brands: {drawn}");
    let quiet = on_tty(&format!("{sweep} --quiet"));
    assert!(!quiet.contains("replays") && quiet.contains("cost"), "{quiet}");
    let resampled = on_tty(&format!("ope --logs {d} --policy uniform --entity brand-1 --resamples 500"));
    assert!(resampled.contains("brand-1: resamples ") && resampled.contains("/500 ["), "{resampled}");
    // Piped: the same results, no bar.
    let args: Vec<String> = sweep.split(' ').map(str::to_string).collect();
    let piped = dlft(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (stdout, stderr) = text(&piped);
    assert!(piped.status.success() && stdout.contains("cost"), "{stdout}{stderr}");
    assert!(!stderr.contains("replays") && !stdout.contains("replays"), "{stderr}");
}

/// `dlft check FILE`: each kind of file is recognised and checked; a runner
/// config's secrets, store and platform are checked too, one line each.
#[test]
fn check_tells_each_kind_of_file_and_names_what_is_wrong() {
    use std::io::{Read, Write};
    for (file, says) in
        [("scenarios/every-fault.toml", "scenario \"every-fault\": ok"), ("policies/kill.toml", "policy: ok")]
    {
        let out = dlft(&["check", file]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{file}: {stderr}");
        assert!(stdout.contains(says), "{file}: {stdout}");
    }
    let bad = scratch(
        "bad-scenario.toml",
        &std::fs::read_to_string("scenarios/sandbox.toml").unwrap().replace("ads = 40", "adz = 40"),
    );
    let out = dlft(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("adz"), "names the field: {}", text(&out).1);
    let broken = scratch("broken.toml", "[run]\nduration_s = 5\nx = = 1\n");
    let out = dlft(&["check", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("broken.toml:3: not TOML"), "names the line: {}", text(&out).1);
    let odd = scratch("odd.toml", "[something]\nx = 1\n");
    let out = dlft(&["check", odd.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("cannot tell what this file is"), "{}", text(&out).1);

    // A runner config against a platform that answers (one HTTP reply).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-check");
    std::fs::create_dir_all(&dir).unwrap();
    let config = std::fs::read_to_string("examples/dlft.sandbox.toml")
        .unwrap()
        .replace("sqlite://dlft.db", &format!("sqlite://{}/dlft.db", dir.display()))
        .replace("http://127.0.0.1:8787", &format!("http://{addr}"))
        .replace("META_ACCESS_TOKEN", "DLFT_CHECK_TEST_TOKEN")
        .replace("REVOLUT_ACCESS_TOKEN", "DLFT_CHECK_TEST_TOKEN")
        .replace("payables_dir = \"payables\"", &format!("payables_dir = \"{}/payables\"", dir.display()));
    let path = scratch("check-run.toml", &config);
    let run = |token: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_dlft"));
        c.args(["check", path.to_str().unwrap()]).current_dir(env!("CARGO_MANIFEST_DIR"));
        match token {
            Some(t) => c.env("DLFT_CHECK_TEST_TOKEN", t),
            None => c.env_remove("DLFT_CHECK_TEST_TOKEN"),
        };
        c.output().unwrap()
    };
    let out = run(Some("t0ken"));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    for line in
        ["ok    Meta token", "ok    Revolut token", "ok    payables folder", "ok    store", "ok    ads platform"]
    {
        assert!(stdout.contains(line), "{line}: {stdout}");
    }
    assert!(!stdout.contains("t0ken"), "a secret's value is never printed");
    server.join().unwrap();
    assert!(!dir.join("dlft.db").exists(), "check creates no store");
    assert!(!dir.join("payables").exists(), "nor a folder");
    // Now the token is missing and nothing answers at the platform's address.
    let out = run(None);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stdout.contains("FAIL  Meta token") && stdout.contains("DLFT_CHECK_TEST_TOKEN"), "{stdout}");
    assert!(stdout.contains("FAIL  Revolut token"), "{stdout}");
    assert!(stdout.contains("FAIL  ads platform"), "{stdout}");
    assert!(stderr.contains("3 checks failed"), "{stderr}");
    // The example's [support] section, uncommented: its secrets are named.
    let (head, tail) = config.split_once("# [support]\n").expect("the example's commented [support]");
    let support: String = tail.lines().map(|l| format!("{}\n", l.trim_start_matches("# "))).collect();
    let with_support = scratch("check-support.toml", &format!("{head}[support]\n{support}"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dlft"))
        .args(["check", with_support.to_str().unwrap()])
        .env("DLFT_CHECK_TEST_TOKEN", "t0ken")
        .env_remove("AGENTMAIL_API_KEY")
        .output()
        .unwrap();
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("FAIL  inbox webhook secrets") && stdout.contains("AGENTMAIL_WEBHOOK_SECRET"), "{stdout}");
    assert!(
        stdout.contains("FAIL  Revolut, shop, inbox and model secrets") && stdout.contains("AGENTMAIL_API_KEY"),
        "{stdout}"
    );
}

/// `dlft init` writes the commented starter config (the sandbox's), which
/// `dlft check` reads as a runner config; a second `init` on the same path
/// is refused with exit 2 and leaves the file as it was.
#[test]
fn init_writes_a_starter_config_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dlft.toml");
    let p = path.to_str().unwrap();
    let out = dlft(&["init", p]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("dlft sandbox serve"), "it says what to do next: {stdout}");
    let written = std::fs::read_to_string(&path).unwrap();
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dlft.sandbox.toml")).unwrap();
    assert_eq!(written, example);
    let (stdout, stderr) = text(&dlft(&["check", p]));
    assert!(
        format!("{stdout}{stderr}").contains("runner config"),
        "check reads it as a runner config: {stdout}{stderr}"
    );
    std::fs::write(&path, "# mine\n").unwrap();
    let again = dlft(&["init", p]);
    let (_, stderr) = text(&again);
    assert_eq!(again.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("exists") && stderr.contains("never overwrites"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "# mine\n", "untouched");
}

/// `dlft sandbox serve` without `--scenario` serves its built-in world from
/// any directory.
#[test]
fn the_sandbox_serves_its_built_in_world_from_any_directory() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dlft"))
        .args(["sandbox", "serve", "--addr", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let served = line.trim().strip_prefix("listening on ").map(str::to_string);
    let truth = served.as_ref().map(|addr| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async { reqwest::get(format!("http://{addr}/_truth")).await.unwrap().text().await.unwrap() })
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(served.is_some(), "the sandbox started outside the repository: {line}");
    let truth: serde_json::Value = serde_json::from_str(&truth.unwrap()).unwrap();
    assert_eq!(truth["ads"].as_array().unwrap().len(), 40, "scenarios/sandbox.toml's 40 ads");
}

/// `/metrics` on an address other hosts reach asks every scrape for the
/// bearer token; what each vendor answered this process is counted by HTTP
/// status, with the age of its last 2xx.
#[test]
#[allow(clippy::disallowed_methods, reason = "waits for a real process in real time")]
fn metrics_for_another_host_need_the_bearer_token_and_count_each_vendors_answers() {
    let (_sb, addr) = common::sandbox(4);
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = common::sandbox_config(dir.path(), &addr)
        .replace("127.0.0.1:0", &format!("0.0.0.0:{port}"))
        .replace("# metrics_token_env", "metrics_token_env")
        // A second brand on its own Meta account: its exchanges carry its name.
        + &format!(
            "\n[brands.south.meta]\nbase_url = \"http://{addr}\"\naccount_id = \"act_south\"\n\
             token_env = \"META_ACCESS_TOKEN\"\ncurrency = \"EUR\"\nbucket_s = 5\n"
        );
    let path = dir.path().join("dlft.toml");
    std::fs::write(&path, config).unwrap();
    let (mut child, log) = common::dlft_run(&path, dir.path(), &[("DLFT_METRICS_TOKEN", "s3cret-token")]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let scrape = |token: Option<&str>| {
        rt.block_on(async {
            let mut req = reqwest::Client::new().get(&url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            match req.send().await {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(_) => (0, String::new()),
            }
        })
    };
    let meta_ok = "dlft_vendor_responses_total{vendor=\"meta\",brand=\"default\",code=\"200\"}";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let body = loop {
        let (status, body) = scrape(Some("s3cret-token"));
        let counted = body.contains("dlft_events_total{brand=")
            && body.contains("dlft_vendor_responses_total{vendor=\"meta\",brand=\"south\",code=");
        if (status == 200 && body.contains(meta_ok) && counted) || std::time::Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let (no_token, _) = scrape(None);
    let (wrong, _) = scrape(Some("s3cret-tokeN"));
    let _ = child.kill();
    let _ = child.wait();
    let log = log.join().unwrap().join("\n");
    assert!(body.contains(meta_ok), "{body}\n{log}");
    assert!(body.contains("dlft_vendor_responses_total{vendor=\"meta\",brand=\"south\",code="), "{body}\n{log}");
    assert!(body.contains("dlft_vendor_last_success_age_seconds{vendor=\"meta\",brand=\"default\"}"), "{body}");
    assert_eq!((no_token, wrong), (401, 401), "a scrape without the token is refused");
    assert!(body.contains("dlft_events_total{brand=\"-\",block=\"scheduler\",kind=\"worker_booted\"}"), "{body}");
    assert!(body.contains("# TYPE dlft_retries_total counter"), "{body}");
}

/// Two runners on one store: each logs the event rows its own workers
/// wrote (every row names its writer, `runner.name/pid`), not the other's;
/// `dlft events --origin` shows one runner's rows.
#[test]
#[allow(clippy::disallowed_methods, reason = "waits for real processes in real time")]
fn each_runner_logs_only_its_own_workers_events() {
    let (_sb, addr) = common::sandbox(5);
    let dir = tempfile::tempdir().unwrap();
    let config = common::sandbox_config(dir.path(), &addr);
    let a = dir.path().join("a.toml");
    let b = dir.path().join("b.toml");
    std::fs::write(&a, config.replace("name = \"local\"", "name = \"alpha\"")).unwrap();
    std::fs::write(&b, config.replace("name = \"local\"", "name = \"beta\"")).unwrap();
    let (mut first, first_log) = common::dlft_run(&a, dir.path(), &[]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (mut second, second_log) = common::dlft_run(&b, dir.path(), &[]);
    std::thread::sleep(std::time::Duration::from_secs(10));
    for child in [&mut first, &mut second] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let logged_seqs = |log: Vec<String>| -> (Vec<u64>, String) {
        let seqs = log
            .iter()
            .filter(|l| l.contains("dlft::events::"))
            .filter_map(|l| l.split_once(" seq=").and_then(|(_, r)| r.split(' ').next()?.parse().ok()))
            .collect();
        (seqs, log.join("\n"))
    };
    let (alpha, alpha_log) = logged_seqs(first_log.join().unwrap());
    let (beta, beta_log) = logged_seqs(second_log.join().unwrap());
    let store = format!("sqlite://{}", dir.path().join("dlft.db").display());
    let out = common::dlft(&["events", "--store", &store, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let origin: std::collections::BTreeMap<u64, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| (v["seq"].as_u64().unwrap(), v["origin"].as_str().unwrap_or("").to_string()))
        .collect();
    assert!(!alpha.is_empty() && !beta.is_empty(), "both runners logged events:\n{alpha_log}\n--\n{beta_log}");
    assert!(alpha.iter().all(|s| origin[s].starts_with("alpha/")), "alpha logged only its rows: {alpha:?}");
    assert!(beta.iter().all(|s| origin[s].starts_with("beta/")), "beta logged only its rows: {beta:?}");
    // Beta wrote all its rows while alpha ran (alpha started first and
    // stopped last): alpha's tail read them and left them out.
    let beta_rows = origin.values().filter(|o| o.starts_with("beta/")).count();
    assert!(beta_rows > 0, "beta wrote rows alpha's tail passed over: {beta_rows}");
    let only_beta = common::dlft(&["events", "--store", &store, "--origin", "beta/"]);
    let text = String::from_utf8_lossy(&only_beta.stdout);
    assert!(!text.is_empty() && text.lines().all(|l| l.ends_with(']') && l.contains("[beta/")), "{text}");
}

/// `dlft run --log-format json` writes one JSON object per stderr line (a
/// log shipper's input); the runner here talks to a sandbox that is not
/// there, so it logs its start-up and its failing calls.
#[test]
#[allow(clippy::disallowed_methods, reason = "waits for a real process in real time")]
fn the_runner_logs_one_json_object_per_line() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let init = std::process::Command::new(env!("CARGO_BIN_EXE_dlft"))
        .args(["init", "dlft.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", text(&init).1);
    // A port nothing listens on: every call fails, and is logged.
    let cfg = std::fs::read_to_string(dir.path().join("dlft.toml")).unwrap().replace("127.0.0.1:8787", "127.0.0.1:9");
    std::fs::write(dir.path().join("dlft.toml"), cfg).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dlft"))
        .args(["run", "--config", "dlft.toml", "--log-format", "json"])
        .current_dir(dir.path())
        .env("META_ACCESS_TOKEN", "t")
        .env("REVOLUT_ACCESS_TOKEN", "t")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            lines.push(line);
            if lines.len() >= 3 && lines.iter().any(|l| l.contains("resuming")) {
                break;
            }
        }
        lines
    });
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !reader.is_finished() && std::time::Instant::now() < give_up {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let lines = reader.join().unwrap();
    assert!(lines.len() >= 3, "three log lines and the resuming line within 30 s: {lines:?}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["target"].is_string() && v["fields"].is_object(), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("\"INFO\"")), "the start-up line: {lines:?}");
    let resuming = lines.iter().find(|l| l.contains("\"resuming\"")).expect("one line says what the start resumes");
    assert!(resuming.contains("0 open intents; 0 live jobs; 0 schedules off of 0"), "{resuming}");
}
