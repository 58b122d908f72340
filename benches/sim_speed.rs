//! Simulated seconds per wall second, reported by criterion as throughput
//! (one "element" = one simulated second). Three runs side by side, so the
//! figures read as ratios on a noisy machine:
//! - `turmoil_scenario_seed`: one seed of ad-kill-container-loss, faults and all;
//! - `turmoil_idle_3_hosts`: the same three hosts sleeping, same tick and
//!   length: turmoil's fixed-tick floor, the fastest the scenario could go;
//! - `in_process_seed`: the same loop and world on the event driver (no network);
//! - `event_driver/brand_day`: one brand-day at production cadence on the event driver.

use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use dlft_sim::inproc::run_in_process;
use dlft_sim::run::{RunOptions, run_seed};
use dlft_sim::scenario::Scenario;

fn load(name: &str) -> Scenario {
    Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name)).unwrap()
}

fn idle_turmoil(duration_s: u64, tick_ms: u64) {
    let mut sim = turmoil::Builder::new()
        .rng_seed(1)
        .epoch(std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600))
        .tick_duration(Duration::from_millis(tick_ms))
        .simulation_duration(Duration::from_secs(duration_s + 60))
        .build();
    for name in ["db", "ads", "worker"] {
        sim.host(name, || async {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    while sim.elapsed() < Duration::from_secs(duration_s) {
        sim.step().unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let scn = load("ad-kill-container-loss.toml");
    let mut g = c.benchmark_group("sim_speed");
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    g.throughput(Throughput::Elements(scn.run.duration_s));
    let mut seed = 0u64;
    g.bench_function("turmoil_scenario_seed", |b| {
        b.iter(|| {
            seed += 1;
            run_seed(&scn, seed, &RunOptions::default()).unwrap()
        })
    });
    g.bench_function("turmoil_idle_3_hosts", |b| b.iter(|| idle_turmoil(scn.run.duration_s, scn.run.tick_ms)));
    g.bench_function("in_process_seed", |b| {
        b.iter(|| {
            seed += 1;
            run_in_process(&scn, seed)
        })
    });
    g.finish();

    // The fast event driver over one brand-day at production cadence
    // (per-second claim loop, per-minute ticks): target under 1 s of wall time.
    let day = load("brand-day.toml");
    let mut g = c.benchmark_group("event_driver");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(day.run.duration_s));
    g.bench_function("brand_day", |b| {
        b.iter(|| {
            seed += 1;
            run_in_process(&day, seed)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
