//! Brands per node (issue 16 part 3): one `Worker` serving N brands at
//! production cadence on this machine, against SQLite and PostgreSQL, in
//! wall-clock time. Each brand is `scenarios/brand-day.toml`'s brand with
//! `--ads` ads (200 by default: a per-minute tick evaluates each, 12,000
//! decisions an hour) on an ad account of its own, served in-process from
//! the sim's world model (no network: the store and the runner are what is
//! measured), its tick every minute and its re-roll every hour, each at the
//! brand's own offset in the period. After a warm-up (every brand's first
//! tick and re-roll), the measured window reports, from the store's own
//! rows: the lag from each claimed job's `run_at` to its claim (p50, p99,
//! max), how long a tick takes from claim to finish (the decision
//! latency), jobs and ad evaluations per second, the jobs due but not
//! claimed at the end, and CPU (this process, and the whole machine, which
//! includes PostgreSQL).
//!
//! ```text
//! cargo bench --bench brands -- [--stores sqlite,pg] [--brands 100,300,1000]
//!     [--ads 200] [--warmup-s 75] [--measure-s 120] [--claim-poll-ms 200] [--tick-concurrency 8]
//! ```
//!
//! Needs PostgreSQL for `pg` (`DLFT_TEST_PG_URL`, default the local
//! server). Not run by CI (it takes minutes per point); figures in
//! `benches/README.md`.

#![allow(clippy::disallowed_methods, reason = "a wall-clock benchmark of a real database")]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dlft_core::config::Sabotage;
use dlft_core::ids::{BrandId, WorkerId};
use dlft_core::jobs::{NoBank, Ports};
use dlft_core::probe::NoProbe;
use dlft_core::store::Store;
use dlft_core::time::{Clock, Millis, Timestamp};
use dlft_core::worker::{Tenant, Worker};
use dlft_live::SystemClock;
use dlft_live::store::{PoolOptions, open_pg, open_sqlite};
use dlft_live::testenv::{PG_DEFAULT_URL, PG_URL_VAR};
use dlft_sim::inproc::InProcessAds;
use dlft_sim::run::rng_for;
use dlft_sim::scenario::Scenario;
use dlft_sim::world::AdsWorld;
use rand::SeedableRng;
use sqlx::Row;

const SCHEMA: &str = "dlft_bench_brands";

struct Args {
    stores: Vec<String>,
    brands: Vec<usize>,
    ads: u32,
    warmup_s: u64,
    measure_s: u64,
    claim_poll_ms: u64,
    tick_concurrency: u32,
}

fn args() -> Args {
    let mut a = Args {
        stores: vec!["sqlite".into(), "pg".into()],
        brands: vec![100, 300, 1000],
        ads: 200,
        warmup_s: 75,
        measure_s: 120,
        claim_poll_ms: 200,
        tick_concurrency: 8,
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut it = raw.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_else(|| panic!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().unwrap_or_else(|_| panic!("{flag}: not a number: {v}"));
        match flag.as_str() {
            "--stores" => a.stores = value().split(',').map(str::to_string).collect(),
            "--brands" => a.brands = value().split(',').map(|n| num(n.to_string()) as usize).collect(),
            "--ads" => a.ads = num(value()) as u32,
            "--warmup-s" => a.warmup_s = num(value()),
            "--measure-s" => a.measure_s = num(value()),
            "--claim-poll-ms" => a.claim_poll_ms = num(value()),
            "--tick-concurrency" => a.tick_concurrency = num(value()) as u32,
            "--bench" => {} // cargo bench's own flag
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// CPU seconds (user + system) of this process, from `/proc/self/stat`:
/// after the command's closing parenthesis, the state is field 0, `utime`
/// field 11 and `stime` field 12 (in clock ticks of 1/100 s).
fn own_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    let field = |i: usize| after.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (field(11) + field(12)) as f64 / 100.0
}

/// Busy and total jiffies of the whole machine, from `/proc/stat`.
fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = cpu.iter().take(8).sum();
    let idle = cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[derive(Default)]
struct Window {
    /// Claim lag per kind, ms.
    lag: BTreeMap<String, Vec<u64>>,
    /// Claim to finish, per kind, ms.
    took: BTreeMap<String, Vec<u64>>,
    /// Jobs due (run_at passed a second before the end) and not claimed.
    backlog: i64,
    coalesced: i64,
}

/// What the store's rows say about `[from, to)`, for one engine's pool.
macro_rules! window_of {
    ($name:ident, $db:ty) => {
        async fn $name(pool: &sqlx::Pool<$db>, from: Timestamp, to: Timestamp) -> Window {
            let jobs = sqlx::query(
                "SELECT id, kind, run_at, finished_at FROM dlft_jobs_done \
                 UNION ALL SELECT id, kind, run_at, NULL FROM dlft_jobs",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            let mut of: BTreeMap<i64, (String, i64, Option<i64>)> = BTreeMap::new();
            for r in &jobs {
                of.insert(r.get::<i64, _>(0), (r.get::<String, _>(1), r.get::<i64, _>(2), r.get::<Option<i64>, _>(3)));
            }
            let claims = sqlx::query("SELECT at, entity FROM dlft_events WHERE kind = 'job_claimed' ORDER BY seq")
                .fetch_all(pool)
                .await
                .unwrap();
            let mut w = Window::default();
            let mut last_claim: BTreeMap<i64, i64> = BTreeMap::new();
            for r in &claims {
                let at: i64 = r.get(0);
                let entity: String = r.get(1);
                let Some(id) = entity.strip_prefix("job#").and_then(|n| n.parse::<i64>().ok()) else { continue };
                last_claim.insert(id, at);
                if at < from.0 as i64 || at >= to.0 as i64 {
                    continue;
                }
                let Some((kind, run_at, _)) = of.get(&id) else { continue };
                w.lag.entry(kind.clone()).or_default().push((at - run_at).max(0) as u64);
            }
            for (id, (kind, _, finished)) in &of {
                let (Some(done), Some(claimed)) = (finished, last_claim.get(id)) else { continue };
                if *done >= from.0 as i64 && *done < to.0 as i64 {
                    w.took.entry(kind.clone()).or_default().push((done - claimed).max(0) as u64);
                }
            }
            let due: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM dlft_jobs WHERE state = 'available' AND run_at <= $1")
                    .bind(to.0 as i64 - 1000)
                    .fetch_one(pool)
                    .await
                    .unwrap();
            w.backlog = due;
            let coalesced: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM dlft_events WHERE kind = 'slot_fired' AND after = 'coalesced' AND at >= $1",
            )
            .bind(from.0 as i64)
            .fetch_one(pool)
            .await
            .unwrap();
            w.coalesced = coalesced;
            for v in w.lag.values_mut().chain(w.took.values_mut()) {
                v.sort_unstable();
            }
            w
        }
    };
}
window_of!(window_pg, sqlx::Postgres);
window_of!(window_sqlite, sqlx::Sqlite);

async fn run_point<S: Store + Clone + 'static>(store: S, a: &Args, n: usize) -> (Timestamp, Timestamp, f64, f64) {
    let mut scn = Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/brand-day.toml")).unwrap();
    scn.world.ads = a.ads;
    scn.control.claim_poll_ms = a.claim_poll_ms;
    scn.control.tick_concurrency = a.tick_concurrency;
    scn.control.spread_schedules = Some(true);
    let clock = SystemClock;
    let start = clock.now();
    let brands: Vec<BrandId> = (0..n).map(|i| BrandId::new(format!("brand-{i:04}"))).collect();
    let ads_of = |i: u64| {
        let world = Arc::new(Mutex::new(AdsWorld::new(&scn, start, rng_for(i, 1))));
        Arc::new(InProcessAds::new(world, clock))
    };
    let tenants = brands
        .iter()
        .enumerate()
        .map(|(i, b)| (b.clone(), Tenant { ads: ads_of(i as u64), bank: NoBank, loop_cfg: scn.loop_config() }))
        .collect();
    let mut cfg = scn.worker_config(Sabotage::None);
    cfg.worker = WorkerId::new("bench-1");
    cfg.brands = brands;
    let mut worker = Worker {
        ports: Ports { store, ads: ads_of(u64::MAX), clock, probe: NoProbe, bank: NoBank },
        cfg,
        loop_cfg: scn.loop_config(),
        tenants,
        rng: rand_chacha::ChaCha8Rng::seed_from_u64(1),
        stop: Default::default(),
        pulse: Default::default(),
    };
    let from = start + Millis::from_secs(a.warmup_s);
    let to = from + Millis::from_secs(a.measure_s);
    let sampler = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(from.0.saturating_sub(SystemClock.now().0))).await;
        let (cpu0, m0, t0) = (own_cpu_s(), machine_jiffies(), Instant::now());
        tokio::time::sleep(std::time::Duration::from_millis(to.0.saturating_sub(SystemClock.now().0))).await;
        let (cpu1, m1, wall) = (own_cpu_s(), machine_jiffies(), t0.elapsed().as_secs_f64());
        let machine_cores = (m1.0 - m0.0) as f64 / (m1.1 - m0.1).max(1) as f64 * num_cpus();
        ((cpu1 - cpu0) / wall, machine_cores)
    });
    worker.run(Some(to)).await.expect("one worker is never replaced");
    let (own, machine) = sampler.await.unwrap();
    (from, to, own, machine)
}

fn num_cpus() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

fn report(store: &str, n: usize, a: &Args, w: &Window, own: f64, machine: f64) {
    let secs = a.measure_s as f64;
    let all: Vec<u64> = {
        let mut v: Vec<u64> = w.lag.values().flatten().copied().collect();
        v.sort_unstable();
        v
    };
    let ticks = w.lag.get("poll_insights").map_or(&[][..], |v| v.as_slice());
    let took = w.took.get("poll_insights").map_or(&[][..], |v| v.as_slice());
    println!(
        "| {store} | {n} | {:.1} | {:.0} | {} / {} / {} | {} / {} | {} / {} | {} | {} | {:.2} | {:.2} |",
        all.len() as f64 / secs,
        ticks.len() as f64 * f64::from(a.ads) / secs,
        pct(&all, 0.5),
        pct(&all, 0.99),
        all.last().copied().unwrap_or(0),
        pct(ticks, 0.5),
        pct(ticks, 0.99),
        pct(took, 0.5),
        pct(took, 0.99),
        w.backlog,
        w.coalesced,
        own,
        machine,
    );
    eprintln!(
        "{{\"store\":\"{store}\",\"brands\":{n},\"claims\":{},\"ticks\":{},\"lag_p99_ms\":{},\"tick_p99_ms\":{},\"backlog\":{},\"cpu_own\":{own:.3},\"cpu_machine\":{machine:.3}}}",
        all.len(),
        ticks.len(),
        pct(&all, 0.99),
        pct(took, 0.99),
        w.backlog
    );
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!(
        "brands per node: {} ads a brand, tick every 60 s, re-roll hourly, claim poll {} ms, tick pool {}, \
         {} s warm-up, {} s measured",
        a.ads, a.claim_poll_ms, a.tick_concurrency, a.warmup_s, a.measure_s
    );
    println!(
        "| store | brands | claims/s | ad evaluations/s | claim lag p50 / p99 / max ms (all jobs) | tick claim lag p50 / p99 ms | tick took p50 / p99 ms | due, unclaimed at end | slots coalesced | CPU ours (cores) | CPU machine (cores) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for store in &a.stores {
        for &n in &a.brands {
            rt.block_on(async {
                match store.as_str() {
                    "sqlite" => {
                        let dir = tempfile::tempdir().unwrap();
                        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
                        let s = open_sqlite(&url, &PoolOptions::default()).await.unwrap();
                        let (from, to, own, machine) = run_point(s.clone(), &a, n).await;
                        let w = window_sqlite(s.pool(), from, to).await;
                        report(store, n, &a, &w, own, machine);
                    }
                    "pg" => {
                        let url = std::env::var(PG_URL_VAR).unwrap_or_else(|_| PG_DEFAULT_URL.to_string());
                        {
                            use sqlx::Connection;
                            let mut c = sqlx::PgConnection::connect(&url).await.expect("PostgreSQL answers");
                            let ddl = format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE");
                            sqlx::raw_sql(sqlx::AssertSqlSafe(ddl)).execute(&mut c).await.unwrap();
                        }
                        let opts = PoolOptions {
                            max_connections: 16,
                            pg_schema: Some(SCHEMA.into()),
                            ..PoolOptions::default()
                        };
                        let s = open_pg(&url, &opts).await.unwrap();
                        let (from, to, own, machine) = run_point(s.clone(), &a, n).await;
                        let w = window_pg(s.pool(), from, to).await;
                        report(store, n, &a, &w, own, machine);
                    }
                    other => panic!("unknown store {other} (sqlite or pg)"),
                }
            });
        }
    }
}
