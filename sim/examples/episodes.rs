//! Prints a seed's MTTR samples with their restart delays:
//! `cargo run --release -p dlft-sim --example episodes -- <scenario> <seed>`.
use std::path::PathBuf;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scn = dlft_sim::scenario::Scenario::load(&PathBuf::from(&args[1])).unwrap();
    let seed: u64 = args[2].parse().unwrap();
    let r = dlft_sim::run::run_seed(&scn, seed, &Default::default()).unwrap();
    println!("mttr samples:   {:?}", r.mttr_ms);
    println!("restart delays: {:?}", &r.plan.restart_delays_ms[..r.mttr_ms.len()]);
    println!("crash sites:    {:?}", r.crash_sites);
}
