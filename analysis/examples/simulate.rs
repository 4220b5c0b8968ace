//! Runs shifter's analyzer and the threshold baseline on the same simulated streams and prints, per
//! group of scenarios, a Markdown table of detection times, false rollbacks (with a 95% upper
//! bound for healthy canaries), promotions before any rollback and the failed requests a bad
//! canary causes.
//!
//! ```text
//! cargo run --release -p shifter-analysis --example simulate -- --seeds 2000
//! cargo run --release -p shifter-analysis --example simulate -- --seeds 2000 --group all --threads 2
//! cargo run --release -p shifter-analysis --example simulate -- --seeds 200 --only "shared bursts"
//! ```

use std::process::ExitCode;
use std::time::Instant;

use shifter_analysis::simulate::grid::Group;
use shifter_analysis::simulate::measure::{Judges, measure, row, table_header};

const USAGE: &str = "usage: simulate [--seeds N] [--threads N] [--group classic|bursts|targets|trickle|noisy|all[,...]] [--only NAME-SUBSTRING]
  --seeds    runs per scenario (default 500)
  --threads  threads the seeds are split over (default: the machine's cores)
  --group    scenario groups, comma-separated (default classic; all groups when --only is given)
  --only     only scenarios whose name contains this text";

struct Args {
    seeds: u64,
    threads: usize,
    groups: Vec<Group>,
    only: Option<String>,
}

fn number<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    let value = value.ok_or_else(|| format!("{flag}: needs a value"))?;
    value.parse().map_err(|_| format!("{flag}: {value:?} is not a whole number"))
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (mut seeds, mut threads, mut groups, mut only) = (500, cores, None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seeds" => seeds = number("--seeds", args.next())?,
            "--threads" => threads = number("--threads", args.next())?,
            "--group" => groups = Some(Group::parse_list(&args.next().ok_or("--group: needs a value")?)?),
            "--only" => only = Some(args.next().ok_or("--only: needs a value")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if threads == 0 {
        return Err("--threads: must be at least 1".into());
    }
    let groups = groups.unwrap_or_else(|| if only.is_some() { Group::ALL.to_vec() } else { vec![Group::Classic] });
    Ok(Args { seeds, threads, groups, only })
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("simulate: {e}");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) };
        }
    };
    let judges = Judges::defaults();
    let names = judges.names();
    let started = Instant::now();
    let mut measured = 0;
    println!(
        "seeds per scenario: {}; threads: {}; judge defaults: interval 10s, alpha 0.01, tolerance 1.2",
        args.seeds, args.threads
    );
    for group in &args.groups {
        let scenarios: Vec<_> = group
            .scenarios()
            .into_iter()
            .filter(|g| args.only.as_ref().is_none_or(|o| g.scenario.name.contains(o.as_str())))
            .collect();
        if scenarios.is_empty() {
            continue;
        }
        let group_started = Instant::now();
        println!("\n### {}: {}\n\n{}", group.name(), group.title(), table_header());
        for g in &scenarios {
            let one = Instant::now();
            let m = measure(&g.scenario, 0..args.seeds, args.threads, &judges);
            for (name, summary) in names.iter().zip(&m.summaries) {
                println!("{}", row(g, name, summary));
            }
            eprintln!("{}: {:.1}s", g.scenario.name, one.elapsed().as_secs_f64());
            measured += 1;
        }
        eprintln!(
            "group {}: {} scenarios in {:.1}s",
            group.name(),
            scenarios.len(),
            group_started.elapsed().as_secs_f64()
        );
    }
    if measured == 0 {
        eprintln!(
            "simulate: no scenario matched (--only {:?} in groups {:?})",
            args.only.unwrap_or_default(),
            args.groups
        );
        return ExitCode::from(2);
    }
    eprintln!("{measured} scenarios, {} seeds each, in {:.1}s", args.seeds, started.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}
