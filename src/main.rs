//! `dlft`: the one command-line interface. Argument parsing and wiring only;
//! the logic lives in the crates.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use dlft_core::config::Sabotage;
use dlft_sim::report::{render, reproduce_command, summarize};
use dlft_sim::run::{RunOptions, run_many, run_seed};
use dlft_sim::scenario::Scenario;

#[derive(Parser)]
#[command(name = "dlft", version, about = "Run an e-commerce brand as a closed-loop control system")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Seeded, time-virtualized fault-injection runs.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
}

#[derive(Subcommand)]
enum SimCommand {
    /// Run a scenario over seeds and check its assertions.
    Run(SimRun),
}

#[derive(clap::Args)]
struct SimRun {
    /// The scenario file (TOML).
    scenario: PathBuf,
    /// Seeds to run, half-open: `0..200` runs seeds 0 to 199.
    #[arg(long, conflicts_with = "seed")]
    seeds: Option<String>,
    /// One seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Run the seed twice and fail if the event-log digests differ.
    #[arg(long, requires = "seed")]
    check_determinism: bool,
    /// Worker threads (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print each seed's fault plan.
    #[arg(long)]
    show_plan: bool,
    /// Remove faults from a failing seed's plan while it keeps failing; print the minimal list.
    #[arg(long, requires = "seed", conflicts_with = "check_determinism")]
    shrink: bool,
    /// Deliberately break the actuator, to see the checker catch it.
    #[arg(long, hide = true, value_enum, default_value = "none")]
    sabotage: SabotageArg,
}

#[derive(Copy, Clone, PartialEq, Eq, clap::ValueEnum)]
enum SabotageArg {
    None,
    SkipIntent,
    SkipReadBack,
}

impl From<SabotageArg> for Sabotage {
    fn from(s: SabotageArg) -> Sabotage {
        match s {
            SabotageArg::None => Sabotage::None,
            SabotageArg::SkipIntent => Sabotage::SkipIntent,
            SabotageArg::SkipReadBack => Sabotage::SkipReadBack,
        }
    }
}

/// Parses `A..B` (half-open); refuses empty and reversed ranges.
fn parse_seed_range(text: &str) -> Result<std::ops::Range<u64>> {
    let (a, b) =
        text.split_once("..").with_context(|| format!("--seeds {text:?}: expected A..B, for example 0..200"))?;
    let start: u64 = a.trim().parse().with_context(|| format!("--seeds {text:?}: {a:?} is not a seed"))?;
    let end: u64 = b.trim().parse().with_context(|| format!("--seeds {text:?}: {b:?} is not a seed"))?;
    if end < start {
        bail!("--seeds {text}: the range is reversed (write {end}..{start})");
    }
    if end == start {
        bail!("--seeds {text}: the range is empty (A..B runs A up to but not including B)");
    }
    Ok(start..end)
}

fn sim_run(args: SimRun) -> Result<ExitCode> {
    let scn = Scenario::load(&args.scenario)?;
    let path = args.scenario.display().to_string();
    let opts = RunOptions { sabotage: args.sabotage.into() };
    let seeds = match (&args.seeds, args.seed) {
        (Some(range), _) => parse_seed_range(range)?,
        (None, Some(s)) => s..s.checked_add(1).context("seed too large")?,
        (None, None) => bail!("give --seeds A..B or --seed S"),
    };
    if args.shrink {
        return shrink_seed(&scn, seeds.start, &opts);
    }
    if args.check_determinism {
        let seed = seeds.start;
        let first = run_seed(&scn, seed, &opts).map_err(anyhow::Error::msg)?;
        let second = run_seed(&scn, seed, &opts).map_err(anyhow::Error::msg)?;
        let same = first.digest == second.digest;
        if args.json {
            let out = serde_json::json!({"scenario": scn.name, "seed": seed, "deterministic": same,
                                          "digests": [first.digest, second.digest], "events": first.events});
            println!("{out}");
        } else {
            println!("seed {seed}: run 1 digest {} ({} events)", first.digest, first.events);
            println!("seed {seed}: run 2 digest {} ({} events)", second.digest, second.events);
            println!("{}", if same { "deterministic" } else { "NOT DETERMINISTIC" });
        }
        if !same {
            eprintln!("reproduce: {}", reproduce_command(&path, seed, "--check-determinism"));
            return Ok(ExitCode::FAILURE);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let bar =
        if std::io::stderr().is_terminal() { ProgressBar::new(seeds.end - seeds.start) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} seeds {pos}/{len} [{elapsed_precise}] {wide_bar} eta {eta}")
            .expect("valid template"),
    );
    let results = run_many(&scn, seeds, threads, &opts, &|_| bar.inc(1));
    bar.finish_and_clear();
    let reports = results.into_iter().collect::<Result<Vec<_>, String>>().map_err(anyhow::Error::msg)?;
    if args.show_plan {
        for r in &reports {
            eprintln!("seed {} fault plan:\n{}", r.seed, r.plan);
        }
    }
    let extra = match args.sabotage {
        SabotageArg::None => "",
        SabotageArg::SkipIntent => "--sabotage skip-intent",
        SabotageArg::SkipReadBack => "--sabotage skip-read-back",
    };
    let summary = summarize(&scn, &path, extra, &reports);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", render(&summary, scn.run.duration_s));
    }
    for cmd in &summary.reproduce {
        eprintln!("reproduce: {cmd}");
    }
    Ok(if summary.passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn shrink_seed(scn: &Scenario, seed: u64, opts: &RunOptions) -> Result<ExitCode> {
    let plan = dlft_sim::run::plan_for(scn, seed);
    match dlft_sim::shrink::shrink(scn, seed, opts, plan).map_err(anyhow::Error::msg)? {
        None => {
            println!("seed {seed} passes: nothing to shrink");
            Ok(ExitCode::SUCCESS)
        }
        Some(s) => {
            let n = |p: &dlft_sim::faults::FaultPlan| p.timed.len() + p.site_crashes.len();
            println!(
                "seed {seed} fails ({}) with {} faults; minimal list after {} runs:",
                s.failure,
                n(&s.original),
                s.runs
            );
            if n(&s.minimal) == 0 {
                println!("  (none: the failure needs no injected fault)");
            }
            print!("{}", s.minimal);
            Ok(ExitCode::FAILURE)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim { command: SimCommand::Run(args) } => sim_run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
