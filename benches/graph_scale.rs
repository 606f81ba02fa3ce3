//! Scale benchmark of the dependency graph: `Graph::compile` in-process, and the real
//! `launchgraph check` and `launchgraph plan --json` run as processes on generated unit
//! directories of 1,000 and 10,000 units.
//!
//! Run with `cargo bench --bench graph_scale`. Pass `compile` or `process` to run one half.
//! Generation is seeded, so every run measures the same directories. The targets these figures
//! are held against are in docs/performance.md. On a machine shared with other work,
//! `LAUNCHGRAPH_BENCH_QUIET=PCT` makes each timed run of the binary wait until the machine is
//! below PCT % busy; the background load is printed either way.

use std::fmt;
use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use launchgraph::graph::Graph;

const SEED: u64 = 0x6c61_756e_6368;
const SIZES: [usize; 2] = [1_000, 10_000];
/// Units every stack may share (think of a model server many gateways use).
const BASES: usize = 10;
const BIN: &str = env!("CARGO_BIN_EXE_launchgraph");

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// Random stacks of 3–20 units, each unit requiring 0–3 earlier members of its stack and,
    /// with probability 0.3, one of the shared base units.
    Stacks,
    /// Each unit requires 0–3 random earlier units anywhere: restart cascades, and so `plan`'s
    /// output, can grow quadratically with the number of units.
    Global,
    /// Each unit requires exactly 3 random earlier units (about 3 edges per unit): the
    /// compile target's edge density. In-process only.
    Dense,
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Shape::Stacks => "stacks",
            Shape::Global => "global",
            Shape::Dense => "dense",
        })
    }
}

/// Zero-padded, so that name order (the order units are compiled in) is index order.
fn unit_name(i: usize) -> String {
    format!("u{i:05}")
}

/// `count` distinct random indices from `range`, pushed onto `out`.
fn pick(
    rng: &mut fastrand::Rng,
    range: std::ops::Range<usize>,
    count: usize,
    out: &mut Vec<usize>,
) {
    let count = count.min(range.len());
    let first = out.len();
    while out.len() - first < count {
        let r = rng.usize(range.clone());
        if !out[first..].contains(&r) {
            out.push(r);
        }
    }
}

/// `requires[i]` for `n` units. Every unit requires only lower indices, so the graph is
/// acyclic.
fn generate(shape: Shape, n: usize) -> Vec<Vec<usize>> {
    let mut rng = fastrand::Rng::with_seed(SEED ^ n as u64);
    let mut requires = vec![Vec::new(); n];
    match shape {
        Shape::Stacks => {
            let mut first = BASES.min(n);
            while first < n {
                let size = rng.usize(3..=20).min(n - first);
                for k in 0..size {
                    let count = rng.usize(0..=3);
                    let reqs = &mut requires[first + k];
                    pick(&mut rng, first..first + k, count, reqs);
                    if rng.f64() < 0.3 {
                        reqs.push(rng.usize(0..BASES));
                    }
                }
                first += size;
            }
        }
        Shape::Global | Shape::Dense => {
            for (i, reqs) in requires.iter_mut().enumerate() {
                let count = if shape == Shape::Dense {
                    3
                } else {
                    rng.usize(0..=3)
                };
                pick(&mut rng, 0..i, count, reqs);
            }
        }
    }
    requires
}

fn edge_count(requires: &[Vec<usize>]) -> usize {
    requires.iter().map(Vec::len).sum()
}

fn write_units(dir: &Path, requires: &[Vec<usize>]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    for (i, reqs) in requires.iter().enumerate() {
        let list: Vec<String> = reqs
            .iter()
            .map(|&r| format!("\"{}\"", unit_name(r)))
            .collect();
        let text = format!(
            "requires = [{}]\n\n[exec]\ncommand = [\"/bin/sleep\", \"1000\"]\n\n\
             [ready]\ntcp = \"127.0.0.1:{}\"\n",
            list.join(", "),
            20_000 + i,
        );
        fs::write(dir.join(format!("{}.toml", unit_name(i))), text)?;
    }
    Ok(())
}

struct Stats {
    min: f64,
    median: f64,
    max: f64,
}

impl Stats {
    fn of(samples: &[Duration]) -> Stats {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let mid = ms.len() / 2;
        let median = if ms.len() % 2 == 0 {
            (ms[mid - 1] + ms[mid]) / 2.0
        } else {
            ms[mid]
        };
        Stats {
            min: ms[0],
            median,
            max: ms[ms.len() - 1],
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cell = format!("{:.3} / {:.3} / {:.3}", self.min, self.median, self.max);
        f.pad(&cell)
    }
}

/// What n log n predicts for the step from `small` to `large`.
fn n_log_n_ratio(small: usize, large: usize) -> f64 {
    let f = |n: usize| n as f64 * (n as f64).ln();
    f(large) / f(small)
}

fn bench_compile() {
    println!("In-process Graph::compile (no process spawn), release build");
    println!("all closures = transitive_dependents of every unit, what restart cascades need");
    println!(
        "{:<7} {:>6} {:>6} {:>5}  {:>28}  {:>28}",
        "shape",
        "units",
        "edges",
        "runs",
        "compile ms min / med / max",
        "all closures ms min/med/max"
    );
    let mut growth = Vec::new();
    for shape in [Shape::Stacks, Shape::Global, Shape::Dense] {
        let mut medians = Vec::new();
        for n in SIZES {
            let requires = generate(shape, n);
            let runs = if n <= 1_000 { 200 } else { 50 };
            let mut compile = Vec::with_capacity(runs);
            let mut closures = Vec::with_capacity(runs);
            let mut graph = None;
            for _ in 0..runs {
                let input = requires.clone();
                let t = Instant::now();
                let g = Graph::compile(input).expect("generated graphs are acyclic");
                compile.push(t.elapsed());
                let t = Instant::now();
                let total: usize = (0..n).map(|i| g.transitive_dependents(i).len()).sum();
                closures.push(t.elapsed());
                std::hint::black_box(total);
                graph = Some(g);
            }
            let g = graph.expect("at least one run");
            assert_eq!(g.edge_count(), edge_count(&requires));
            medians.push((n + g.edge_count(), Stats::of(&compile).median));
            println!(
                "{:<7} {:>6} {:>6} {:>5}  {:>28}  {:>28}",
                shape.to_string(),
                n,
                g.edge_count(),
                runs,
                Stats::of(&compile),
                Stats::of(&closures),
            );
        }
        if let [(small_size, small), (large_size, large)] = medians[..] {
            growth.push(format!(
                "  {shape}: compile x{:.2}; n log n in units + edges predicts x{:.2}",
                large / small,
                n_log_n_ratio(small_size, large_size)
            ));
        }
    }
    println!(
        "Growth from {} to {} units (ratio of medians)",
        SIZES[0], SIZES[1]
    );
    for line in growth {
        println!("{line}");
    }
    println!();
}

/// The `cpu` line of /proc/stat: (busy, steal, total) ticks over all cores.
fn cpu_totals() -> Option<(u64, u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    let steal = *v.get(7)?;
    Some((total - idle - steal, steal, total))
}

/// How busy the machine is while this benchmark does nothing, over `window`, in % of all
/// cores: other builds on a shared machine show up here.
fn background(window: Duration) -> Option<f64> {
    let (b0, _, t0) = cpu_totals()?;
    std::thread::sleep(window);
    let (b1, _, t1) = cpu_totals()?;
    Some((b1 - b0) as f64 * 100.0 / (t1 - t0).max(1) as f64)
}

/// With `LAUNCHGRAPH_BENCH_QUIET=PCT`, waits until the machine was below PCT % busy over
/// 200 ms (at most 60 s). Without it, returns at once.
fn calm() {
    let Some(threshold) = std::env::var("LAUNCHGRAPH_BENCH_QUIET")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
    else {
        return;
    };
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        match background(Duration::from_millis(200)) {
            Some(busy) if busy >= threshold => {}
            _ => return,
        }
    }
}

fn conditions() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let profile = if cfg!(debug_assertions) {
        "debug (figures are not representative)"
    } else {
        "release (bench profile)"
    };
    let load = fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into());
    format!("machine: {cores} cores, build {profile}, load {load}")
}

/// Runs the binary once, its stdout discarded (as `> /dev/null`), and times it.
fn run(args: &[&str]) -> Result<Duration, String> {
    calm();
    let t = Instant::now();
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {BIN}: {e}"))?;
    let elapsed = t.elapsed();
    if !out.status.success() {
        return Err(format!(
            "`launchgraph {}` failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ));
    }
    Ok(elapsed)
}

/// Checks, before anything is timed, that the binary really checks and plans: a binary that
/// exits 0 without doing the work would otherwise produce plausible, meaningless figures.
fn sanity(root: &Path, units: &Path) -> Result<(), String> {
    let cyclic = root.join("cyclic");
    write_units(&cyclic, &[vec![1], vec![0]]).map_err(|e| e.to_string())?;
    let cyclic = cyclic.to_str().expect("temp paths are UTF-8");
    let status = Command::new(BIN)
        .args(["check", "--units", cyclic])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {BIN}: {e}"))?;
    if status.success() {
        return Err(format!(
            "`launchgraph check --units {cyclic}` accepted two units that require each other: \
             this binary does not implement `check` yet"
        ));
    }

    let units = units.to_str().expect("temp paths are UTF-8");
    run(&["check", "--units", units])?;
    let out = Command::new(BIN)
        .args(["plan", "--units", units, "--json"])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {BIN}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`launchgraph plan --units {units} --json` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ));
    }
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
        return Err(format!(
            "`launchgraph plan --units {units} --json` did not print JSON ({e}): \
             this binary does not implement `plan --json` yet"
        ));
    }
    Ok(())
}

struct Row {
    shape: Shape,
    n: usize,
    runs: usize,
    edges: usize,
    check: Stats,
    plan: Stats,
    both: Stats,
}

fn bench_process() -> Result<(), String> {
    println!("End to end: the launchgraph binary as a process (spawn, read units, compile, print)");
    println!("binary: {BIN}");
    let root = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let mut rows: Vec<Row> = Vec::new();
    for shape in [Shape::Stacks, Shape::Global] {
        for n in SIZES {
            let requires = generate(shape, n);
            let dir = root.path().join(format!("{shape}-{n}"));
            write_units(&dir, &requires).map_err(|e| format!("cannot write units: {e}"))?;
            if rows.is_empty() {
                sanity(root.path(), &dir)?;
            }
            let units = dir.to_str().expect("temp paths are UTF-8");
            let check_args = ["check", "--units", units];
            let plan_args = ["plan", "--units", units, "--json"];

            // Warm-up: file cache, binary pages; also sizes the number of timed runs.
            let warm = run(&check_args)? + run(&plan_args)?;
            let runs = if warm > Duration::from_secs(2) {
                3
            } else if n > 1_000 {
                5
            } else {
                10
            };
            let (mut check, mut plan, mut both) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..runs {
                let c = run(&check_args)?;
                let p = run(&plan_args)?;
                check.push(c);
                plan.push(p);
                both.push(c + p);
            }
            rows.push(Row {
                shape,
                n,
                runs,
                edges: edge_count(&requires),
                check: Stats::of(&check),
                plan: Stats::of(&plan),
                both: Stats::of(&both),
            });
            let row = rows.last().expect("just pushed");
            if row.n == SIZES[0] {
                println!();
                println!(
                    "shape {shape} (timed runs after one warm-up); background {}% busy",
                    background(Duration::from_secs(1)).map_or("?".into(), |b| format!("{b:.0}"))
                );
                if shape == Shape::Global {
                    println!(
                        "  note: restart cascades here can reach most of the graph, so plan's \
                         output (and time) may grow quadratically; judge it apart from stacks"
                    );
                }
                println!(
                    "  {:>6} {:>6} {:>4}  {:>26}  {:>26}  {:>26}",
                    "units",
                    "edges",
                    "runs",
                    "check ms min / med / max",
                    "plan ms min / med / max",
                    "check+plan ms min/med/max"
                );
            }
            println!(
                "  {:>6} {:>6} {:>4}  {:>26}  {:>26}  {:>26}",
                row.n, row.edges, row.runs, row.check, row.plan, row.both
            );
        }
    }

    println!();
    println!(
        "Growth from {} to {} units (ratio of medians)",
        SIZES[0], SIZES[1]
    );
    for shape in [Shape::Stacks, Shape::Global] {
        let find = |n| rows.iter().find(|r| r.shape == shape && r.n == n);
        let (Some(small), Some(large)) = (find(SIZES[0]), find(SIZES[1])) else {
            continue;
        };
        println!(
            "  {shape}: check x{:.2}, plan x{:.2}, check+plan x{:.2}; n log n predicts x{:.2} \
             (units) and x{:.2} (units + edges)",
            large.check.median / small.check.median,
            large.plan.median / small.plan.median,
            large.both.median / small.both.median,
            n_log_n_ratio(small.n, large.n),
            n_log_n_ratio(small.n + small.edges, large.n + large.edges),
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    // `cargo bench` passes flags such as `--bench`; a bare word selects one half.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |part: &str| only.is_empty() || only.iter().any(|a| a == part);
    println!("graph_scale: seed {SEED:#x}");
    println!("{}", conditions());
    println!();
    if wants("compile") {
        bench_compile();
    }
    if wants("process") {
        if let Err(e) = bench_process() {
            eprintln!();
            eprintln!("graph_scale: end-to-end figures unavailable: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
