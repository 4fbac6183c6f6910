//! Printing figures: a block after each scenario, the summary table at the
//! end with the targets, and the JSON file.

use std::path::Path;

use anyhow::Context;
use serde_json::{Map, Value, json};

use crate::stats::{Figure, Figures};

/// A target of issue 5: a figure, and the bound its ratio or value must
/// meet.
struct Target {
    figure: &'static str,
    what: &'static str,
    met: fn(&Figures, &Figure) -> Option<bool>,
}

/// The figure the retry targets compare with: Redis CPU of a job that
/// succeeds at once.
const SUCCESS_CPU: &str = "process_1_worker_redis_cpu";

/// How many times Redis CPU of a success `x` is (`None` without the
/// process scenario).
fn times_success(figs: &Figures, x: &Figure) -> Option<f64> {
    let s = figs.get(SUCCESS_CPU)?.median();
    (s > 0.0).then(|| x.median() / s)
}

const TARGETS: &[Target] = &[
    Target {
        figure: "process_1_worker",
        what: ">= 70 % of ceiling_consume",
        met: |f, x| f.ratio(x).map(|r| r >= 0.70),
    },
    Target {
        // The same target at the best setting on a box Redis shares: one
        // runtime thread (`--threads 1`).
        figure: "process_1_worker_1_thread",
        what: ">= 70 % of ceiling_consume",
        met: |f, x| f.ratio(x).map(|r| r >= 0.70),
    },
    Target {
        figure: "enqueue_many",
        what: ">= 50 % of ceiling_add",
        met: |f, x| f.ratio(x).map(|r| r >= 0.50),
    },
    Target {
        figure: "end_to_end",
        what: ">= 60 % of ceiling_combined",
        met: |f, x| f.ratio(x).map(|r| r >= 0.60),
    },
    Target {
        figure: "latency_p99_10k",
        what: "< 5 ms",
        met: |_, x| Some(x.median() < 5.0),
    },
    Target {
        figure: "worker_rss_mb",
        what: "< 40 MB",
        met: |_, x| Some(x.median() < 40.0),
    },
    Target {
        figure: "retry_redis_cpu",
        what: "<= 3 x process_1_worker",
        met: |f, x| times_success(f, x).map(|r| r <= 3.0),
    },
    Target {
        figure: "retry_1ms_redis_cpu",
        what: "<= 3 x process_1_worker",
        met: |f, x| times_success(f, x).map(|r| r <= 3.0),
    },
    Target {
        figure: "retry_10ms_redis_cpu",
        what: "<= 3 x process_1_worker",
        met: |f, x| times_success(f, x).map(|r| r <= 3.0),
    },
];

/// A number with a sensible precision for its size.
fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        let s = format!("{v:.0}");
        // thousands separators
        let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn ratio_text(figs: &Figures, f: &Figure) -> String {
    match (figs.ratio(f), f.ceiling) {
        (Some(r), Some(c)) => format!("{:>5.0} % of {c}", r * 100.0),
        _ => String::new(),
    }
}

fn line(figs: &Figures, f: &Figure) -> String {
    let range = if f.samples.len() > 1 {
        format!("({} – {})", num(f.min()), num(f.max()))
    } else {
        String::new()
    };
    let note = if f.note.is_empty() {
        String::new()
    } else {
        format!("  [{}]", f.note)
    };
    format!(
        "  {:<38} {:>12} {:<7} {:<24} {}{}",
        f.name,
        num(f.median()),
        f.unit,
        range,
        ratio_text(figs, f),
        note
    )
}

/// Prints the figures whose names start with `prefix`.
pub fn section(figs: &Figures, prefix: &str) {
    for f in figs.iter().filter(|f| f.name.starts_with(prefix)) {
        println!("{}", line(figs, f));
    }
}

/// Prints the summary table: every figure, then the targets (judged only
/// when `judge`: a smoke run or a debug build says nothing about speed).
pub fn summary(figs: &Figures, judge: bool) {
    println!();
    println!("== summary (median, min – max over runs; ratio = how close to Redis alone) ==");
    println!(
        "  {:<38} {:>12} {:<7} {:<24} ratio to ceiling",
        "figure", "median", "unit", "(min – max)"
    );
    for f in figs.iter() {
        println!("{}", line(figs, f));
    }
    println!();
    if judge {
        println!("== targets (issue 5) ==");
    } else {
        println!("== targets (issue 5): not judged in a --quick run or a debug build ==");
    }
    for t in TARGETS {
        let Some(f) = figs.get(t.figure) else {
            println!("  {:<28} {:<28} not measured", t.figure, t.what);
            continue;
        };
        let verdict = match (t.met)(figs, f) {
            _ if !judge => "-",
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "n/a",
        };
        let value = match (times_success(figs, f), figs.ratio(f)) {
            (Some(x), _) if t.what.contains(" x ") => {
                format!("{} {} = {x:.1} x", num(f.median()), f.unit)
            }
            (_, Some(r)) => format!("{} {} = {:.0} %", num(f.median()), f.unit, r * 100.0),
            _ => format!("{} {}", num(f.median()), f.unit),
        };
        println!("  {:<28} {:<28} {:<32} {verdict}", t.figure, t.what, value);
    }
}

/// Writes `{name: {median, min, max, unit, ratio_to_ceiling}}` to `path`.
pub fn write_json(figs: &Figures, path: &Path) -> anyhow::Result<()> {
    let mut out = Map::new();
    for f in figs.iter() {
        out.insert(
            f.name.clone(),
            json!({
                "median": f.median(),
                "min": f.min(),
                "max": f.max(),
                "unit": f.unit,
                "ratio_to_ceiling": figs.ratio(f),
            }),
        );
    }
    let text = serde_json::to_string_pretty(&Value::Object(out))?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}
