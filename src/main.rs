//! `dlft`: the one command-line interface. Argument parsing and wiring only;
//! the logic lives in the crates.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use dlft_core::config::Sabotage;
use dlft_sim::report::{render, reproduce_command, summarize};
use dlft_sim::run::{RunOptions, run_many};
use dlft_sim::scenario::Scenario;

mod chaos;
mod check;
mod run;
mod sandbox;
mod sandbox_support;
mod sandbox_track;
mod status;
mod support;

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
    /// History catalogs: generate from the sim world, import the Open Bandit Dataset.
    Datasets {
        #[command(subcommand)]
        command: DatasetsCommand,
    },
    /// Replay history through the kill loop (insights: estimator, policy,
    /// envelope) or the refund chain (claims: identity graph, tier, policy,
    /// envelope).
    Backtest(BacktestArgs),
    /// Off-policy evaluation of a bandit policy on logged decisions.
    Ope(OpeArgs),
    /// The production runner: workers on a durable store, talking to Meta (or a sandbox).
    Run {
        #[arg(long, default_value = "dlft.toml")]
        config: PathBuf,
        /// `text` (readable lines) or `json` (one object per line).
        #[arg(long, value_enum, default_value = "text")]
        log_format: run::LogFormat,
    },
    /// Write a commented starter runner config (the sandbox's, to begin
    /// with): `dlft init` then `dlft sandbox serve` and `dlft run`. Never
    /// overwrites a file.
    Init {
        #[arg(default_value = "dlft.toml")]
        path: PathBuf,
        /// One JSON object: the file written and the commands to run next.
        #[arg(long)]
        json: bool,
    },
    /// Apply the store's embedded migrations and exit (`dlft run` also does at start-up).
    Migrate {
        /// sqlite://PATH or postgres://USER@HOST:PORT/DB
        #[arg(long, default_value = "sqlite://dlft.db")]
        store: String,
        /// One JSON object: the store (password hidden) and its schema version.
        #[arg(long)]
        json: bool,
    },
    /// A local ads platform: the sim's world over HTTP with Meta's wire shapes.
    Sandbox {
        #[command(subcommand)]
        command: SandboxCommand,
    },
    /// Schedules on a durable store: list them, or re-enable one the breaker disabled.
    Schedules {
        #[command(subcommand)]
        command: SchedulesCommand,
    },
    /// Check a scenario, runner config or policy file before it runs (a
    /// runner config also: its secrets are set, its store and platform answer).
    Check {
        file: PathBuf,
        /// One JSON document: file, kind, ok, summary, checks, error.
        #[arg(long)]
        json: bool,
    },
    /// The event log of a durable store, oldest first: one line per state
    /// transition, with ISO-8601 times (read-only: never creates a store).
    Events(EventsArgs),
    /// Budget caps as they stand: for each brand's cap, its current period
    /// (in the brand's time zone) with reserved, posted and left
    /// (read-only: never creates a store).
    Budgets(BudgetsArgs),
    /// One screen of a durable store, per brand: intents per action and
    /// phase, live jobs and the oldest due one's wait, schedules and
    /// breakers with why, workers with host, pid and last heartbeat, the
    /// newest insights bucket read, budgets, the leak counter (read-only:
    /// never creates a store).
    Status(StatusArgs),
    /// The support chain offline: customer messages through the model and
    /// the anti-manipulation gate.
    Support {
        #[command(subcommand)]
        command: SupportCommand,
    },
}

#[derive(Subcommand)]
enum SupportCommand {
    /// Run each message of a JSONL file (`{"id", "text"}`, optional
    /// `"order"`: `{"id", "total": "49.90", "currency", "refundable",
    /// "shipment": delivered|in_transit|lost, "tier":
    /// trusted|watch|high|blocked}`; without one, a standard order of 49.90
    /// EUR, delivered, trusted customer) through policy → gate, and audit
    /// what would have left. Exits 1 when money above a ceiling or an
    /// approval, or a leak, would have gone out.
    Judge {
        #[arg(long)]
        messages: PathBuf,
        #[arg(long, value_enum, default_value = "sim-honest")]
        model: support::ModelArg,
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum, default_value = "none", hide = true)]
        sabotage: support::JudgeSabotage,
    },
}

#[derive(clap::Args)]
struct StatusArgs {
    /// sqlite://PATH or postgres://USER@HOST:PORT/DB
    #[arg(long, default_value = "sqlite://dlft.db")]
    store: String,
    /// Only this brand.
    #[arg(long)]
    brand: Option<String>,
    /// One JSON document, numbers as numbers.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct BudgetsArgs {
    /// sqlite://PATH or postgres://USER@HOST:PORT/DB
    #[arg(long, default_value = "sqlite://dlft.db")]
    store: String,
    /// Only this brand.
    #[arg(long)]
    brand: Option<String>,
    /// Where the caps stand at this instant instead of now: ISO-8601 or epoch milliseconds.
    #[arg(long)]
    at: Option<String>,
    /// Every account of every period, not just the current ones.
    #[arg(long)]
    history: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct EventsArgs {
    /// sqlite://PATH or postgres://USER@HOST:PORT/DB
    #[arg(long, default_value = "sqlite://dlft.db")]
    store: String,
    /// Only events whose entity contains this (`kill/ad-3`, `job#12`, `worker-1`).
    #[arg(long)]
    entity: Option<String>,
    /// Only this brand's rows (`-`: a worker's own rows, such as its boot).
    #[arg(long)]
    brand: Option<String>,
    /// Only this block: sensor, estimator, policy, envelope, actuator, scheduler.
    #[arg(long)]
    block: Option<String>,
    /// Only this kind (`intent_advanced`, `job_retried`, …).
    #[arg(long)]
    kind: Option<String>,
    /// Only events at or after this instant: ISO-8601 (`2026-12-02T10:00:00Z`) or epoch milliseconds.
    #[arg(long)]
    since: Option<String>,
    /// Only rows written by this process (`name/pid` as the runner logs it
    /// at start, or a prefix: `eu-1/`).
    #[arg(long)]
    origin: Option<String>,
    /// Only events after this sequence number.
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Keep printing new events as they are written (Ctrl-C stops).
    #[arg(long)]
    follow: bool,
}

/// The starter config `dlft init` writes.
const STARTER_CONFIG: &str = include_str!("../examples/dlft.sandbox.toml");

/// `dlft init PATH`: writes the starter config, refusing to overwrite.
fn init(path: &Path, json: bool) -> Result<ExitCode> {
    use std::io::Write;
    let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!("error: {} exists; dlft init never overwrites a file (name another path)", path.display());
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(anyhow::anyhow!("cannot create {}: {e}", path.display())),
    };
    file.write_all(STARTER_CONFIG.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    let next = [
        "dlft sandbox serve".to_string(),
        format!("META_ACCESS_TOKEN=x REVOLUT_ACCESS_TOKEN=x dlft run --config {}", path.display()),
    ];
    if json {
        let check = format!("dlft check {}", path.display());
        println!("{}", serde_json::json!({"wrote": path, "check": check, "next": next}));
        return Ok(ExitCode::SUCCESS);
    }
    println!("wrote {}: a runner config for the local sandbox, commented", path.display());
    println!("next: `dlft sandbox serve` in one terminal, then");
    println!("      `META_ACCESS_TOKEN=x REVOLUT_ACCESS_TOKEN=x dlft run --config {}`", path.display());
    println!("      (`dlft check {}` validates it first)", path.display());
    Ok(ExitCode::SUCCESS)
}

/// The world `dlft sandbox serve` serves by default, built into the binary.
const SANDBOX_WORLD: &str = include_str!("../scenarios/sandbox.toml");

#[derive(Subcommand)]
enum SandboxCommand {
    /// Serve until stopped; prints `listening on ADDR` once bound.
    Serve {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value = "127.0.0.1:8787")]
        addr: std::net::SocketAddr,
        /// The scenario whose [world] the sandbox serves; without it, the
        /// built-in copy of `scenarios/sandbox.toml` (works from any
        /// directory).
        #[arg(long)]
        scenario: Option<PathBuf>,
    },
    /// An unreliable network in front of the sandbox (or any plain-HTTP
    /// upstream): latency, 503s, lost replies, resets and stalls, drawn per
    /// request from a seed. `GET /_chaos` counts them; `POST /_chaos/calm`
    /// stops them. Prints `listening on ADDR` once bound.
    Chaos(chaos::ChaosArgs),
}

#[derive(Subcommand)]
enum SchedulesCommand {
    /// Print every schedule: enabled or not, and why.
    List {
        #[arg(long, default_value = "sqlite://dlft.db")]
        store: String,
        /// One JSON object per schedule (times as ISO-8601 and epoch ms).
        #[arg(long)]
        json: bool,
    },
    /// Re-enable a schedule (an explicit operator act, recorded with its reason).
    Enable {
        name: String,
        #[arg(long, default_value = "sqlite://dlft.db")]
        store: String,
        /// The brand whose schedule it is (schedules are per brand).
        #[arg(long, default_value = dlft_core::ids::BrandId::DEFAULT)]
        brand: String,
        #[arg(long, default_value = "operator re-enabled")]
        reason: String,
        /// One JSON object: brand, schedule, whether it was off, and why.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DatasetsCommand {
    /// Write history produced by the sim's world model.
    Generate {
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        days: u32,
        #[arg(long, default_value_t = 1)]
        brands: u32,
        /// Bandit decisions logged per hour per brand.
        #[arg(long, default_value_t = 60)]
        bandit_per_hour: u32,
        #[arg(long)]
        out: PathBuf,
        /// One JSON object: rows per kind, the files written.
        #[arg(long)]
        json: bool,
        /// No progress bar (there is none anyway when stderr is not a terminal).
        #[arg(long)]
        quiet: bool,
    },
    /// Convert an Open Bandit Dataset campaign (`{campaign}.csv` + `item_context.csv`) to bandit logs.
    ImportObd {
        /// For example ../shared/datasets/open-bandit-sample/bts/men
        campaign_dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// One JSON object: entity, rounds, arms, the files written.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct BacktestArgs {
    /// A history catalog (with an `insights/` kind for a kill policy, a
    /// `claims/` kind and maybe `disputes/` for a refund policy).
    #[arg(long)]
    data: PathBuf,
    /// A policy file with a `[kill]` or a `[refund]` section.
    #[arg(long)]
    policy: PathBuf,
    /// Sweep a parameter of the policy's section: name=a..b:step, b
    /// included. Repeat for a grid.
    #[arg(long)]
    sweep: Vec<String>,
    #[arg(long)]
    json: bool,
    /// Write an HTML report with plots here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Threads for the sweep (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar (there is none anyway when stderr is not a terminal).
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct OpeArgs {
    /// A history catalog (with a `bandit/` kind).
    #[arg(long)]
    logs: PathBuf,
    /// `uniform`, `ts`, or a policy file with a `[bandit]` section.
    #[arg(long)]
    policy: String,
    /// Evaluate only this entity (required with --json when there are several).
    #[arg(long)]
    entity: Option<String>,
    #[arg(long)]
    json: bool,
    /// λ: clipping threshold of IPS and DR, and Switch-DR's switch.
    #[arg(long, default_value_t = 1e6)]
    clip: f64,
    /// Bootstrap resamples for the intervals.
    #[arg(long, default_value_t = 10_000)]
    resamples: u32,
    /// Seed of the bootstrap and of the replay method's draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar (there is none anyway when stderr is not a terminal).
    #[arg(long)]
    quiet: bool,
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
    /// Run every seed twice and fail if any seed's event-log digests differ.
    #[arg(long)]
    check_determinism: bool,
    /// Worker threads (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print each seed's fault plan (to stdout, under a header per seed, before the results).
    #[arg(long, conflicts_with = "json")]
    show_plan: bool,
    /// Print the seed's event log (to stdout, one line per transition, times relative to the run's start).
    #[arg(long, requires = "seed", conflicts_with = "json")]
    events: bool,
    /// No progress bar (there is none either when stderr is not a terminal).
    #[arg(long, short)]
    quiet: bool,
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
    TrustWebhooks,
    SharedAccount,
    SkipReservation,
    FreshRequestId,
    SkipPayeeCheck,
    DropPayoutJobs,
    IgnoreReversals,
    BrandCapsOnly,
    FreshRefundKey,
    SkipTierCap,
    IgnoreChargebacks,
    IgnoreTracker,
    MirrorClockBound,
    IgnoreSharedValues,
    NoEscalation,
    KeepCollateral,
    OpenGate,
    NoDetection,
    UnbookedModelCalls,
    UncappedModelCalls,
    RefundWholeOrder,
    FreshReplyMarker,
}

impl From<SabotageArg> for Sabotage {
    fn from(s: SabotageArg) -> Sabotage {
        match s {
            SabotageArg::None => Sabotage::None,
            SabotageArg::SkipIntent => Sabotage::SkipIntent,
            SabotageArg::SkipReadBack => Sabotage::SkipReadBack,
            SabotageArg::TrustWebhooks => Sabotage::TrustWebhooks,
            SabotageArg::SharedAccount => Sabotage::SharedAccount,
            SabotageArg::SkipReservation => Sabotage::SkipReservation,
            SabotageArg::FreshRequestId => Sabotage::FreshRequestId,
            SabotageArg::SkipPayeeCheck => Sabotage::SkipPayeeCheck,
            SabotageArg::DropPayoutJobs => Sabotage::DropPayoutJobs,
            SabotageArg::IgnoreReversals => Sabotage::IgnoreReversals,
            SabotageArg::BrandCapsOnly => Sabotage::BrandCapsOnly,
            SabotageArg::FreshRefundKey => Sabotage::FreshRefundKey,
            SabotageArg::SkipTierCap => Sabotage::SkipTierCap,
            SabotageArg::IgnoreChargebacks => Sabotage::IgnoreChargebacks,
            SabotageArg::IgnoreTracker => Sabotage::IgnoreTracker,
            SabotageArg::MirrorClockBound => Sabotage::MirrorClockBound,
            SabotageArg::IgnoreSharedValues => Sabotage::IgnoreSharedValues,
            SabotageArg::NoEscalation => Sabotage::NoEscalation,
            SabotageArg::KeepCollateral => Sabotage::KeepCollateral,
            SabotageArg::OpenGate => Sabotage::OpenGate,
            SabotageArg::NoDetection => Sabotage::NoDetection,
            SabotageArg::UnbookedModelCalls => Sabotage::UnbookedModelCalls,
            SabotageArg::UncappedModelCalls => Sabotage::UncappedModelCalls,
            SabotageArg::RefundWholeOrder => Sabotage::RefundWholeOrder,
            SabotageArg::FreshReplyMarker => Sabotage::FreshReplyMarker,
        }
    }
}

/// Runs every seed of `seeds` twice; fails if any seed's two event logs differ.
fn check_determinism(
    scn: &Scenario,
    path: &str,
    seeds: std::ops::Range<u64>,
    threads: usize,
    opts: &RunOptions,
    json: bool,
    quiet: bool,
) -> Result<ExitCode> {
    let bar = progress(2 * (seeds.end - seeds.start), "runs", quiet);
    let run = || -> Result<Vec<dlft_sim::run::SeedReport>> {
        run_many(scn, seeds.clone(), threads, opts, &|_| bar.inc(1))
            .into_iter()
            .collect::<Result<Vec<_>, String>>()
            .map_err(anyhow::Error::msg)
    };
    let (first, second) = (run()?, run()?);
    bar.finish_and_clear();
    let differing: Vec<u64> =
        first.iter().zip(&second).filter(|(a, b)| a.digest != b.digest).map(|(a, _)| a.seed).collect();
    let n = first.len();
    if json {
        let digests: serde_json::Map<String, serde_json::Value> = first
            .iter()
            .zip(&second)
            .map(|(a, b)| (a.seed.to_string(), serde_json::json!([a.digest, b.digest])))
            .collect();
        let out = serde_json::json!({"scenario": scn.name, "seeds": n, "deterministic": differing.is_empty(),
                                      "differing": differing, "digests": digests});
        println!("{out}");
    } else {
        for (a, b) in first.iter().zip(&second).filter(|_| n == 1) {
            println!("seed {}: run 1 digest {} ({} events)", a.seed, a.digest, a.events);
            println!("seed {}: run 2 digest {} ({} events)", b.seed, b.digest, b.events);
        }
        let seeds_word = if n == 1 { "seed" } else { "seeds" };
        if differing.is_empty() {
            println!("deterministic: {n} {seeds_word}, each run twice with the same event log");
        } else {
            println!("NOT DETERMINISTIC: {} of {n} {seeds_word} differ ({differing:?})", differing.len());
        }
    }
    for seed in &differing {
        eprintln!("reproduce: {}", reproduce_command(path, *seed, "--check-determinism"));
    }
    Ok(if differing.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
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

/// A progress bar of `len` `what` on stderr when it is a terminal and not
/// `quiet` (hidden otherwise: output that is piped stays clean).
fn progress(len: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    // A name read from a file may hold braces: not template syntax here.
    let what = what.replace(['{', '}'], "");
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} {{pos}}/{{len}} [{{elapsed_precise}}] {{wide_bar}} eta {{eta}} {{msg}}"
        ))
        .expect("valid template"),
    );
    bar
}

fn sim_run(args: SimRun) -> Result<ExitCode> {
    let scn = Scenario::load(&args.scenario)?;
    let path = args.scenario.display().to_string();
    let opts = RunOptions { sabotage: args.sabotage.into(), keep_events: args.events };
    let seeds = match (&args.seeds, args.seed) {
        (Some(range), _) => parse_seed_range(range)?,
        (None, Some(s)) => s..s.checked_add(1).context("seed too large")?,
        (None, None) => bail!("give --seeds A..B or --seed S"),
    };
    if args.shrink {
        return shrink_seed(&scn, seeds.start, &opts);
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if args.check_determinism {
        return check_determinism(&scn, &path, seeds, threads, &opts, args.json, args.quiet);
    }
    let bar = progress(seeds.end - seeds.start, "seeds", args.quiet);
    let results = run_many(&scn, seeds, threads, &opts, &|_| bar.inc(1));
    bar.finish_and_clear();
    let reports = results.into_iter().collect::<Result<Vec<_>, String>>().map_err(anyhow::Error::msg)?;
    if args.show_plan {
        for r in &reports {
            println!("== seed {}: fault plan\n{}", r.seed, r.plan);
        }
    }
    let start = scn.start();
    for r in reports.iter().filter(|r| r.log.is_some()) {
        println!(
            "== seed {}: event log (seq, time since the start, block/kind, entity, before -> after, cause)",
            r.seed
        );
        for e in r.log.iter().flatten() {
            let since = e.at.0.saturating_sub(start.0);
            println!(
                "{:>7}  +{}.{:03} s  {}/{}  {}  {} -> {}  ({})",
                e.seq,
                since / 1_000,
                since % 1_000,
                name_of(&e.block),
                name_of(&e.kind),
                e.entity,
                e.before,
                e.after,
                e.cause
            );
        }
        println!("== seed {}: results", r.seed);
    }
    let extra = match args.sabotage {
        SabotageArg::None => "",
        SabotageArg::SkipIntent => "--sabotage skip-intent",
        SabotageArg::SkipReadBack => "--sabotage skip-read-back",
        SabotageArg::TrustWebhooks => "--sabotage trust-webhooks",
        SabotageArg::SharedAccount => "--sabotage shared-account",
        SabotageArg::SkipReservation => "--sabotage skip-reservation",
        SabotageArg::FreshRequestId => "--sabotage fresh-request-id",
        SabotageArg::SkipPayeeCheck => "--sabotage skip-payee-check",
        SabotageArg::DropPayoutJobs => "--sabotage drop-payout-jobs",
        SabotageArg::IgnoreReversals => "--sabotage ignore-reversals",
        SabotageArg::BrandCapsOnly => "--sabotage brand-caps-only",
        SabotageArg::FreshRefundKey => "--sabotage fresh-refund-key",
        SabotageArg::SkipTierCap => "--sabotage skip-tier-cap",
        SabotageArg::IgnoreChargebacks => "--sabotage ignore-chargebacks",
        SabotageArg::IgnoreTracker => "--sabotage ignore-tracker",
        SabotageArg::MirrorClockBound => "--sabotage mirror-clock-bound",
        SabotageArg::IgnoreSharedValues => "--sabotage ignore-shared-values",
        SabotageArg::NoEscalation => "--sabotage no-escalation",
        SabotageArg::KeepCollateral => "--sabotage keep-collateral",
        SabotageArg::OpenGate => "--sabotage open-gate",
        SabotageArg::NoDetection => "--sabotage no-detection",
        SabotageArg::UnbookedModelCalls => "--sabotage unbooked-model-calls",
        SabotageArg::UncappedModelCalls => "--sabotage uncapped-model-calls",
        SabotageArg::RefundWholeOrder => "--sabotage refund-whole-order",
        SabotageArg::FreshReplyMarker => "--sabotage fresh-reply-marker",
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

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn datasets(command: DatasetsCommand) -> Result<ExitCode> {
    match command {
        DatasetsCommand::Generate { seed, days, brands, bandit_per_hour, out, quiet, json } => {
            // A catalog may grow (overlapping files are refused on their own);
            // anything else in the directory is not ours to write beside.
            let kinds: Vec<&str> = dlft_datasets::ALL.iter().map(|s| s.kind).collect();
            if let Ok(entries) = std::fs::read_dir(&out) {
                let mut foreign: Vec<String> = entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !kinds.contains(&n.as_str()) && n != ".staging")
                    .collect();
                foreign.sort();
                if !foreign.is_empty() {
                    bail!(
                        "{} is not empty and not a history catalog (it holds {}): give an empty or new directory, \
                         or a catalog to add to",
                        out.display(),
                        foreign.join(", ")
                    );
                }
            }
            let spec = dlft_datasets::generate::Spec { seed, days, brands, bandit_per_hour };
            let bar = progress(u64::from(brands), "brands", quiet);
            let summary = dlft_datasets::generate::generate_with(&spec, &out, &|n, _| {
                bar.set_position(u64::from(n));
                if n == brands {
                    bar.set_message("writing files");
                }
            })?;
            bar.finish_and_clear();
            if json {
                let doc = serde_json::json!({"out": out, "rows": summary.rows, "files": summary.files});
                println!("{doc}");
                return Ok(ExitCode::SUCCESS);
            }
            for (kind, rows) in &summary.rows {
                println!("{kind:<10} {rows:>8} rows");
            }
            println!("{} files written under {}", summary.files.len(), out.display());
        }
        DatasetsCommand::ImportObd { campaign_dir, out, json } => {
            let imported = dlft_datasets::obd::import(&campaign_dir, &out)?;
            if json {
                let doc = serde_json::json!({"entity": imported.entity, "rounds": imported.rows,
                                             "arms": imported.n_arms, "files": imported.files});
                println!("{doc}");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{}: {} rounds over {} arms written to {}",
                imported.entity,
                imported.rows,
                imported.n_arms,
                imported.files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn backtest(args: BacktestArgs) -> Result<ExitCode> {
    let policy = dlft_datasets::policy::load(&args.policy).map_err(anyhow::Error::msg)?;
    if let Some(refund) = policy.refund {
        if policy.kill.is_some() {
            bail!("{}: both [kill] and [refund]: a backtest replays one of them", args.policy.display());
        }
        return backtest_refunds(&args, &refund);
    }
    let kill =
        policy.kill.with_context(|| format!("{}: no [kill] or [refund] section to backtest", args.policy.display()))?;
    let sweeps: Vec<_> = args
        .sweep
        .iter()
        .map(|s| dlft_datasets::policy::parse_sweep(s))
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    let history = dlft_datasets::load_insights(&args.data)?;
    let threads = args.threads.unwrap_or_else(cores);
    let bar = progress(0, "replays", args.quiet);
    let variants = dlft_datasets::backtest::run_all_with(&history, &kill, &sweeps, threads, &|n, of| {
        bar.set_length(of as u64);
        bar.set_position(n as u64);
    })
    .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    if args.json {
        let out: Vec<_> = variants
            .iter()
            .map(|v| serde_json::json!({"params": v.params, "currency": v.currency, "totals": v.totals,
                                        "kills": v.entities.iter().map(|(e, r)| (e.clone(), &r.kills)).collect::<std::collections::BTreeMap<_, _>>()}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", dlft_datasets::report::table(&variants));
    }
    if let Some(path) = &args.report {
        let command: Vec<String> = std::env::args().collect();
        write_report(path, &dlft_datasets::report::html(&variants, &command.join(" ")))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes an HTML report whole (a temporary file renamed into place).
fn write_report(path: &Path, html: &str) -> Result<()> {
    let tmp = path.with_extension("html.tmp");
    std::fs::write(&tmp, html).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))?;
    eprintln!("report: {}", path.display());
    Ok(())
}

/// `dlft backtest --policy` with a `[refund]` section: the history's claims
/// and disputes replayed through the refund chain.
fn backtest_refunds(args: &BacktestArgs, refund: &dlft_datasets::policy::RefundSection) -> Result<ExitCode> {
    use dlft_datasets::policy::{REFUND_SWEEPABLE, parse_sweep_of};
    let sweeps: Vec<_> = args
        .sweep
        .iter()
        .map(|s| parse_sweep_of(s, &REFUND_SWEEPABLE))
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    let claims = dlft_datasets::load_claims(&args.data)?;
    let disputes = dlft_datasets::load_disputes(&args.data)?;
    let threads = args.threads.unwrap_or_else(cores);
    let bar = progress(0, "replays", args.quiet);
    let variants = dlft_datasets::backtest::run_refunds_with(&claims, &disputes, refund, &sweeps, threads, &|n, of| {
        bar.set_length(of as u64);
        bar.set_position(n as u64);
    })
    .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    if args.json {
        let out: Vec<_> = variants
            .iter()
            .map(|v| {
                serde_json::json!({"params": v.params, "currency": v.currency, "totals": v.totals,
                                   "cost_minor": dlft_datasets::report::refund_cost(v), "brands": v.entities})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", dlft_datasets::report::refund_table(&variants));
    }
    if let Some(path) = &args.report {
        let command: Vec<String> = std::env::args().collect();
        write_report(path, &dlft_datasets::report::refund_html(&variants, &command.join(" ")))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn ope(args: OpeArgs) -> Result<ExitCode> {
    use dlft_core::estimate::ope::{OpeConfig, Target, evaluate_with, rounds_for};
    let target = match args.policy.as_str() {
        "uniform" => Target::Uniform,
        "ts" => Target::Ts { cfg: Default::default(), seed: 0 },
        file => {
            let p = dlft_datasets::policy::load(std::path::Path::new(file)).map_err(anyhow::Error::msg)?;
            let b = p.bandit.with_context(|| format!("{file}: no [bandit] section to evaluate"))?;
            Target::Ts { cfg: b.ts_config(), seed: b.seed }
        }
    };
    let mut logs = dlft_datasets::load_bandit(&args.logs)?;
    if let Some(e) = &args.entity {
        let names: Vec<String> = logs.iter().map(|l| l.entity.clone()).collect();
        logs.retain(|l| &l.entity == e);
        if logs.is_empty() {
            bail!("--entity {e}: not in {} (it has {})", args.logs.display(), names.join(", "));
        }
    }
    if args.json && logs.len() > 1 {
        let names: Vec<&str> = logs.iter().map(|l| l.entity.as_str()).collect();
        bail!("{} holds several entities ({}): choose one with --entity", args.logs.display(), names.join(", "));
    }
    let cfg = OpeConfig {
        clip: args.clip,
        resamples: args.resamples,
        alpha: 0.05,
        seed: args.seed,
        threads: args.threads.unwrap_or_else(cores),
    };
    for log in &logs {
        let rounds = rounds_for(&log.rounds, log.n_arms, log.n_positions, &target, args.seed)?;
        let bar = progress(u64::from(args.resamples), &format!("{}: resamples", log.entity), args.quiet);
        let report = evaluate_with(&rounds, &cfg, &|| bar.inc(1))?;
        bar.finish_and_clear();
        let logged = log.rounds.iter().map(|r| r.reward).sum::<f64>() / log.rounds.len() as f64;
        if args.json {
            let mut v = serde_json::to_value(&report)?;
            v["entity"] = log.entity.clone().into();
            v["logged_policy_value"] = logged.into();
            println!("{}", serde_json::to_string_pretty(&v)?);
            continue;
        }
        println!(
            "{}: {} rounds, {} arms x {} positions; ESS {:.1}, max weight {:.1}, replay kept {}; logged policy's own mean reward {:.5}",
            log.entity,
            report.n_rounds,
            log.n_arms,
            log.n_positions,
            report.ess,
            report.max_weight,
            report.replay_rounds,
            logged
        );
        println!("  {:<10} {:>10}   95% interval ({} resamples)", "estimator", "value", args.resamples);
        for name in dlft_core::estimate::ope::ESTIMATORS {
            let e = &report.estimators[name];
            println!("  {name:<10} {:>10.5}   [{:.5}, {:.5}]", e.value, e.ci_low, e.ci_high);
        }
        if report.ess < 0.01 * report.n_rounds as f64 {
            println!(
                "  warning: ESS {:.1} is under 1% of {} rounds: the weighted estimates are unreliable",
                report.ess, report.n_rounds
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs an async command on a multi-threaded runtime.
fn tokio_main(f: impl std::future::Future<Output = Result<()>>) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    rt.block_on(f)?;
    Ok(ExitCode::SUCCESS)
}

async fn budgets(args: BudgetsArgs) -> Result<()> {
    use dlft_core::envelope::budget::standing;
    use dlft_core::store::Store;
    use dlft_core::time::{Clock, Timestamp};
    use dlft_live::store::{Engine, PoolOptions, open_pg, open_sqlite};
    let brand = args.brand.as_deref().map(dlft_core::ids::BrandId::parse).transpose().map_err(anyhow::Error::msg)?;
    let at = match args.at.as_deref() {
        Some(t) => Timestamp(parse_instant(t)?),
        None => dlft_live::SystemClock.now(),
    };
    let opts = PoolOptions { max_connections: 1, existing_only: true, ..PoolOptions::default() };
    async fn show<S: Store>(
        s: S,
        args: &BudgetsArgs,
        brand: Option<dlft_core::ids::BrandId>,
        at: Timestamp,
    ) -> Result<()> {
        let declared = s.budgets().await?;
        let accounts = s.accounts(brand.as_ref()).await?;
        if let Some(b) = &brand
            && !declared.iter().any(|(d, _)| d == b)
        {
            let known: Vec<String> = declared.iter().map(|(d, _)| d.to_string()).collect();
            bail!("brand {b} declared no budgets in this store (brands with budgets: {known:?})");
        }
        if args.history {
            for a in &accounts {
                let m = |minor| dlft_core::money::Money::new(minor, a.key.currency);
                if args.json {
                    println!("{}", serde_json::to_string(a)?);
                } else {
                    let name = a.key.cap_name();
                    println!(
                        "{:<12} {name:<24} {:<11} cap {:>14}  reserved {:>14}  posted {:>14}  left {:>14}",
                        a.key.brand,
                        a.key.period,
                        m(a.limit).to_string(),
                        m(a.pending).to_string(),
                        m(a.posted).to_string(),
                        m(a.left().max(0)).to_string()
                    );
                }
            }
            return Ok(());
        }
        for (b, budgets) in declared.iter().filter(|(b, _)| brand.as_ref().is_none_or(|x| x == b)) {
            if !args.json {
                println!("{b} ({})", budgets.describe());
            }
            for (cap, r) in budgets.caps.iter().zip(standing(b, budgets, &accounts, at)) {
                if args.json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    println!(
                        "  {:<24} {:<11} cap {:>14}  reserved {:>14}  posted {:>14}  left {:>14}",
                        cap.name(),
                        r.period,
                        r.limit.to_string(),
                        r.pending.to_string(),
                        r.posted.to_string(),
                        r.left.to_string()
                    );
                }
            }
        }
        Ok(())
    }
    match Engine::of(&args.store)? {
        Engine::Postgres => show(open_pg(&args.store, &opts).await?, &args, brand, at).await,
        Engine::Sqlite => show(open_sqlite(&args.store, &opts).await?, &args, brand, at).await,
    }
}

async fn schedules(command: SchedulesCommand) -> Result<()> {
    use dlft_core::store::Store;
    use dlft_core::time::Clock;
    use dlft_live::store::{Engine, PoolOptions, open_pg, open_sqlite};
    let url = match &command {
        SchedulesCommand::List { store, .. } | SchedulesCommand::Enable { store, .. } => store.clone(),
    };
    let opts = PoolOptions { max_connections: 1, existing_only: true, ..PoolOptions::default() };
    async fn act<S: Store>(s: S, command: SchedulesCommand) -> Result<()> {
        match command {
            SchedulesCommand::List { json, .. } => {
                for r in s.schedules().await? {
                    if json {
                        let line = serde_json::json!({
                            "brand": r.brand, "schedule": r.name, "enabled": r.enabled, "reason": r.reason,
                            "changed_at": r.changed_at.0, "changed_at_iso": iso(r.changed_at.0),
                            "last_slot": r.last_slot.map(|t| t.0), "last_slot_iso": r.last_slot.map(|t| iso(t.0)),
                        });
                        println!("{line}");
                        continue;
                    }
                    let state = if r.enabled { "enabled" } else { "DISABLED" };
                    let last = r.last_slot.map_or("never".to_string(), |t| iso(t.0));
                    println!("{:<16} {:<32} {state:<9} last slot {last}: {}", r.brand, r.name, r.reason);
                }
            }
            SchedulesCommand::Enable { name, reason, brand, json, .. } => {
                let brand = dlft_core::ids::BrandId::parse(&brand).map_err(anyhow::Error::msg)?;
                let rows = s.schedules().await?;
                let Some(row) = rows.iter().find(|r| r.name == name && r.brand == brand) else {
                    let known: Vec<String> = rows.iter().map(|r| format!("{}/{}", r.brand, r.name)).collect();
                    bail!("no schedule {name:?} of brand {brand} (known: {})", known.join(", "));
                };
                let was_disabled = !row.enabled;
                if was_disabled {
                    let reason = format!("operator: {reason}");
                    s.set_schedule(&brand, &name, true, &reason, dlft_live::SystemClock.now()).await?;
                }
                if json {
                    let doc = serde_json::json!({"brand": brand, "schedule": name, "enabled": true,
                                                 "was_disabled": was_disabled, "was_reason": row.reason});
                    println!("{doc}");
                } else if was_disabled {
                    println!("{brand}/{name}: enabled (was disabled: {})", row.reason);
                } else {
                    println!("{brand}/{name}: already enabled");
                }
            }
        }
        Ok(())
    }
    match Engine::of(&url)? {
        Engine::Postgres => act(open_pg(&url, &opts).await?, command).await,
        Engine::Sqlite => act(open_sqlite(&url, &opts).await?, command).await,
    }
}

/// An instant as ISO-8601 UTC with milliseconds.
fn iso(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| format!("{ms} ms"), |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// `--since`: ISO-8601 or epoch milliseconds.
fn parse_instant(s: &str) -> Result<u64> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .with_context(|| format!("--since {s:?}: expected ISO-8601 (2026-12-02T10:00:00Z) or epoch milliseconds"))?;
    u64::try_from(t.timestamp_millis()).with_context(|| format!("--since {s:?} is before 1970"))
}

/// The serialized name of a unit enum value (`Sensor`, `job_retried`).
/// A unit enum's snake-case name, as it is serialized (`job_retried`).
pub(crate) fn name_of(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

async fn events(args: EventsArgs) -> Result<()> {
    use dlft_core::store::Store;
    use dlft_live::store::{Engine, PoolOptions, open_pg, open_sqlite};
    const BLOCKS: [&str; 6] = ["sensor", "estimator", "policy", "envelope", "actuator", "scheduler"];
    if let Some(b) = &args.block
        && !BLOCKS.contains(&b.to_ascii_lowercase().as_str())
    {
        bail!("--block {b:?}: expected one of {}", BLOCKS.join(", "));
    }
    let since = args.since.as_deref().map(parse_instant).transpose()?;
    let opts = PoolOptions { max_connections: 1, existing_only: true, ..PoolOptions::default() };
    async fn show<S: Store>(s: S, args: EventsArgs, since: Option<u64>) -> Result<()> {
        let mut after = args.after;
        loop {
            let batch = s.events(after).await?;
            for e in &batch {
                after = after.max(e.seq);
                let block = name_of(&e.block);
                let kind = name_of(&e.kind);
                let brand = e.brand.as_ref().map_or("-", |b| b.as_str());
                let keep = args.entity.as_ref().is_none_or(|x| e.entity.contains(x.as_str()))
                    && args.brand.as_ref().is_none_or(|b| b == brand)
                    && args.block.as_ref().is_none_or(|b| block.eq_ignore_ascii_case(b))
                    && args.kind.as_ref().is_none_or(|k| kind.eq_ignore_ascii_case(k))
                    && since.is_none_or(|t| e.at.0 >= t)
                    && args
                        .origin
                        .as_ref()
                        .is_none_or(|o| e.origin.as_ref().is_some_and(|x| x.starts_with(o.as_str())));
                if !keep {
                    continue;
                }
                if args.json {
                    let line = serde_json::json!({
                        "seq": e.seq, "at": e.at.0, "at_iso": iso(e.at.0), "brand": e.brand, "block": block, "kind": kind,
                        "entity": e.entity, "before": e.before, "after": e.after, "cause": e.cause,
                        "origin": e.origin,
                    });
                    println!("{line}");
                } else {
                    let by = e.origin.as_ref().map_or(String::new(), |o| format!("  [{o}]"));
                    println!(
                        "{:>7}  {}  {brand}  {block}/{kind}  {}  {} -> {}  ({}){by}",
                        e.seq,
                        iso(e.at.0),
                        e.entity,
                        e.before,
                        e.after,
                        e.cause
                    );
                }
            }
            if !args.follow {
                return Ok(());
            }
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
        }
    }
    match Engine::of(&args.store)? {
        Engine::Postgres => show(open_pg(&args.store, &opts).await?, args, since).await,
        Engine::Sqlite => show(open_sqlite(&args.store, &opts).await?, args, since).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim { command: SimCommand::Run(args) } => sim_run(args),
        Command::Datasets { command } => datasets(command),
        Command::Backtest(args) => backtest(args),
        Command::Ope(args) => ope(args),
        Command::Run { config, log_format } => tokio_main(async move {
            run::init_tracing(log_format);
            run::run(&config).await
        }),
        Command::Migrate { store, json } => tokio_main(async move { run::migrate(&store, json).await }),
        Command::Init { path, json } => init(&path, json),
        Command::Sandbox { command: SandboxCommand::Serve { seed, addr, scenario } } => {
            let scn = match &scenario {
                Some(path) => Scenario::load(path),
                None => Scenario::parse(SANDBOX_WORLD, Path::new("scenarios/sandbox.toml (built in)")),
            }
            .map_err(anyhow::Error::msg);
            scn.and_then(|scn| tokio_main(async move { sandbox::serve(&scn, seed, addr).await }))
        }
        Command::Sandbox { command: SandboxCommand::Chaos(args) } => tokio_main(chaos::serve(args)),
        Command::Schedules { command } => tokio_main(schedules(command)),
        Command::Events(args) => tokio_main(events(args)),
        Command::Budgets(args) => tokio_main(budgets(args)),
        Command::Status(args) => {
            tokio_main(async move { status::status(&args.store, args.brand.as_deref(), args.json).await })
        }
        Command::Support { command: SupportCommand::Judge { messages, model, json, sabotage } } => {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .context("starting tokio")
                .and_then(|rt| rt.block_on(support::judge(&messages, model, json, sabotage)))
        }
        Command::Check { file, json } => tokio_main(async move { check::check(&file, json).await }),
    };
    match result {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<run::Stopped>().is_some() => {
            eprintln!("error: {}", causes(&e));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {}", causes(&e));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes on one line, each cause once: a cause whose
/// text the message before it already holds (many libraries print their
/// source inside their own message) is left out.
fn causes(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
