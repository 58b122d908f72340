//! The real crash test: real processes, a real database, real HTTP.
//!
//! A sandbox (`dlft sandbox serve`) plays the ads platform; `dlft run`
//! processes share one store. One of them is SIGKILLed again and again and
//! restarted 300 ms later as a supervisor would. Each of its lives is told
//! (`DLFT_HOLD_AT`) to stop at one probe site, in turn each phase of a kill
//! (before the pause, after it, after `applied`, after the read-back), then
//! the tick's and a job's last step: the test waits until the log says the
//! victim is there and SIGKILLs it exactly between those two phases. At the end the processes
//! are stopped with SIGTERM, and the store is checked against the sandbox's
//! truth: every pause in the world has exactly one committed intent and one
//! action row (ledger = world), no ad was paused twice, every loser was
//! killed, nothing was abandoned. MTTR is measured in wall time per kill:
//! from SIGKILL until the restarted worker has booted and every job the dead
//! one held is claimed again (p50/p99 printed).
//!
//! PostgreSQL: two processes (CI starts the server; see `.ci/run`).
//! SQLite: one process.

#![allow(clippy::disallowed_methods, reason = "a wall-clock test of real processes")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dlft_core::store::{IntentPhase, Store};
use dlft_core::telemetry::EventKind;
use dlft_core::time::{Clock, Timestamp};
use dlft_live::SystemClock;
use dlft_live::store::{PoolOptions, open_pg, open_sqlite};
use dlft_live::testenv::pg_url_or_skip;

const KILLS: usize = 20;

fn dlft() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dlft"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// Starts the sandbox on an ephemeral port and returns it with its address.
fn sandbox(seed: u64) -> (Child, String) {
    let mut child = dlft()
        .args(["sandbox", "serve", "--seed", &seed.to_string(), "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("sandbox starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").expect("the sandbox prints its address").to_string();
    (child, addr)
}

fn write_config(dir: &Path, name: &str, store_url: &str, sandbox: &str) -> PathBuf {
    let base = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dlft.sandbox.toml"))
        .unwrap()
        .replace("sqlite://dlft.db", store_url)
        .replace("name = \"local\"", &format!("name = \"{name}\""))
        .replace("workers = 2", "workers = 1")
        .replace("127.0.0.1:9464", "127.0.0.1:0")
        .replace("http://127.0.0.1:8787", &format!("http://{sandbox}"));
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, base).unwrap();
    path
}

/// Where the victim holds on each of its lives, in turn (`DLFT_HOLD_AT`):
/// the kill's four phases first, then the tick's and a job's last step.
const HOLD_SITES: [&str; 7] = [
    "kill_before_pause",
    "kill_after_pause",
    "kill_after_applied",
    "kill_after_read_back",
    "tick_after_page",
    "tick_after_decide",
    "before_finish",
];
const KILL_PHASE_SITES: usize = 4;

fn start_runner(config: &Path, log: &Path, hold: Option<&str>) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    dlft()
        .args(["run", "--config", config.to_str().unwrap()])
        .env("DLFT_HOLD_AT", hold.unwrap_or(""))
        .env("META_ACCESS_TOKEN", "sandbox-token")
        .env("RUST_LOG", "info,sqlx=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("dlft run starts")
}

fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    panic!("dlft run did not stop within 10 s of SIGTERM");
}

async fn truth(sandbox: &str) -> serde_json::Value {
    let resp = reqwest::get(format!("http://{sandbox}/_truth")).await.expect("the truth endpoint answers");
    assert!(resp.status().is_success(), "truth endpoint: {}", resp.status());
    resp.json().await.expect("truth is JSON")
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Kills `names[0]` (the victim) `KILLS` times, restarting it each time,
/// with the other runners left alone. Returns MTTR samples in ms.
async fn crash_loop<S: Store>(store: &S, dir: &Path, names: &[&str], configs: &[PathBuf], sandbox: &str) {
    let logs: Vec<PathBuf> = names.iter().map(|n| dir.join(format!("{n}.log"))).collect();
    let mut procs: Vec<Child> = configs
        .iter()
        .zip(&logs)
        .enumerate()
        .map(|(i, (c, l))| start_runner(c, l, (i == 0).then_some(HOLD_SITES[0])))
        .collect();
    let victim = format!("{}-1", names[0]);
    let mut log_from = 0;
    // Let the loop get going: the first losers become killable after ~20 s.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut mttr = Vec::new();
    let mut held = [0usize; HOLD_SITES.len()];
    let mut mid_kill = 0;
    for k in 0..KILLS {
        // This life of the victim holds at one probe site: wait (up to 6 s)
        // for it to get there, so the SIGKILL lands exactly between two phases.
        let site = k % HOLD_SITES.len();
        let deadline = Instant::now() + Duration::from_secs(6);
        let mut at_site = false;
        while Instant::now() < deadline && !at_site {
            let log = std::fs::read(&logs[0]).unwrap();
            at_site = String::from_utf8_lossy(&log[log_from.min(log.len())..]).contains("held at probe site");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if at_site {
            held[site] += 1;
        } else {
            // Not reached in time: prefer an instant with a kill intent open, for up to 1.5 s.
            let deadline = Instant::now() + Duration::from_millis(500 + (k as u64 * 397) % 1_000);
            while Instant::now() < deadline {
                if store.intents().await.unwrap().iter().any(|i| !i.phase.is_final()) {
                    mid_kill += 1;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let killed_at = SystemClock.now();
        procs[0].kill().unwrap(); // SIGKILL
        procs[0].wait().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        log_from = std::fs::metadata(&logs[0]).unwrap().len() as usize;
        procs[0] = start_runner(&configs[0], &logs[0], Some(HOLD_SITES[(k + 1) % HOLD_SITES.len()]));
        mttr.push(recovery(store, &victim, killed_at).await);
    }
    let breakdown: Vec<String> = HOLD_SITES.iter().zip(held).map(|(s, n)| format!("{s} {n}")).collect();
    let between_kill_phases: usize = held[..KILL_PHASE_SITES].iter().sum();
    eprintln!(
        "kills held at a probe site: {} of {KILLS} ({}); {mid_kill} more with a kill intent open",
        held.iter().sum::<usize>(),
        breakdown.join(", ")
    );
    assert!(between_kill_phases >= 2, "at least two kills land between a kill's phases: {breakdown:?}");
    // Converge with no faults, then stop every process gracefully.
    tokio::time::sleep(Duration::from_secs(25)).await;
    for (p, n) in procs.iter_mut().zip(names) {
        let status = sigterm(p);
        assert!(status.success(), "{n}: SIGTERM is a clean exit, got {status}");
    }
    mttr.sort_unstable();
    eprintln!(
        "MTTR over {} kills: p50 {} ms, p99 {} ms, max {} ms",
        mttr.len(),
        percentile(&mttr, 0.5),
        percentile(&mttr, 0.99),
        mttr.last().unwrap()
    );
    assert_eq!(mttr.len(), KILLS);
    check_against_truth(store, sandbox).await;
}

/// Wall ms from `killed_at` until `victim` booted again and every job its
/// dead life held is claimed again.
async fn recovery<S: Store>(store: &S, victim: &str, killed_at: Timestamp) -> u64 {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let events = store.events(0).await.unwrap();
        let recent: Vec<_> = events.iter().filter(|e| e.at >= killed_at).collect();
        if let Some(boot) = recent.iter().find(|e| e.kind == EventKind::WorkerBooted && e.entity == victim) {
            let released: Vec<&str> = recent
                .iter()
                .filter(|e| e.seq > boot.seq && e.kind == EventKind::JobReleased)
                .filter(|e| e.cause.starts_with(&format!("boot sweep: held by {victim} ")))
                .map(|e| e.entity.as_str())
                .collect();
            let mut done = boot.at;
            let mut all = true;
            for job in released {
                match recent.iter().find(|e| e.kind == EventKind::JobClaimed && e.entity == job && e.seq > boot.seq) {
                    Some(c) => done = done.max(c.at),
                    None => all = false,
                }
            }
            if all {
                return done.0.saturating_sub(killed_at.0);
            }
        }
        assert!(Instant::now() < give_up, "{victim} did not recover within 60 s of a kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn check_against_truth<S: Store>(store: &S, sandbox: &str) {
    let t = truth(sandbox).await;
    let intents = store.intents().await.unwrap();
    let committed: Vec<&str> =
        intents.iter().filter(|i| i.phase == IntentPhase::Committed).map(|i| i.ad.as_str()).collect();
    assert!(
        intents.iter().all(|i| i.phase != IntentPhase::Abandoned),
        "nothing abandoned: {:?}",
        intents.iter().filter(|i| i.phase == IntentPhase::Abandoned).collect::<Vec<_>>()
    );
    let mut paused: Vec<&str> = t["ads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| !a["paused_at"].is_null())
        .map(|a| a["ad"].as_str().unwrap())
        .collect();
    let mut ledger = committed.clone();
    paused.sort_unstable();
    ledger.sort_unstable();
    assert_eq!(ledger, paused, "ledger = world: one committed kill per paused ad");
    let effects = t["effects"].as_array().unwrap();
    let mut effect_ads: Vec<&str> = effects.iter().map(|e| e["ad"].as_str().unwrap()).collect();
    effect_ads.sort_unstable();
    let before = effect_ads.len();
    effect_ads.dedup();
    assert_eq!(before, effect_ads.len(), "at most once: no ad paused twice in the world");
    let losers: Vec<&str> =
        t["ads"].as_array().unwrap().iter().filter(|a| a["loser"] == true).map(|a| a["ad"].as_str().unwrap()).collect();
    for l in &losers {
        assert!(paused.contains(l), "every loser is killed by the end: {l} is not");
    }
    let live = store.intents().await.unwrap().iter().filter(|i| !i.phase.is_final()).count();
    assert_eq!(live, 0, "every intent reached a final phase");
    eprintln!("{} losers, {} pauses in the world, {} committed kills", losers.len(), paused.len(), ledger.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_processes_survive_sigkill_with_nothing_leaked() {
    let Some(url) = pg_url_or_skip("postgres_two_processes_survive_sigkill_with_nothing_leaked").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let schema = format!("dlft_crash_{}", std::process::id());
    let store =
        open_pg(&url, &PoolOptions { pg_schema: Some(schema.clone()), ..PoolOptions::default() }).await.unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let runner_url = format!("{url}{sep}options=-c%20search_path%3D{schema}");
    let (mut sb, addr) = sandbox(7);
    let configs =
        [write_config(dir.path(), "a", &runner_url, &addr), write_config(dir.path(), "b", &runner_url, &addr)];
    crash_loop(&store, dir.path(), &["a", "b"], &configs, &addr).await;
    sb.kill().unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
        .execute(store.pool())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_one_process_survives_sigkill_with_nothing_leaked() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("dlft.db").display());
    let store = open_sqlite(&url, &PoolOptions::default()).await.unwrap();
    let (mut sb, addr) = sandbox(11);
    let configs = [write_config(dir.path(), "solo", &url, &addr)];
    crash_loop(&store, dir.path(), &["solo"], &configs, &addr).await;
    sb.kill().unwrap();
}
