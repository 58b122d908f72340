//! Times one brand-day on the fast event driver: `cargo run --release -p dlft-sim --example brand_day`.
use std::path::Path;
#[allow(clippy::disallowed_methods)]
fn main() {
    let scn =
        dlft_sim::scenario::Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/brand-day.toml"))
            .unwrap();
    let t = std::time::Instant::now();
    let run = dlft_sim::inproc::run_in_process(&scn, 1);
    let wall = t.elapsed();
    let killed = run.store.intents.len();
    println!(
        "brand-day: {:?} wall, {:.0}x real time, {} events, {} calls, {} kills",
        wall,
        86400.0 / wall.as_secs_f64(),
        run.store.events.len(),
        run.calls,
        killed
    );
}
