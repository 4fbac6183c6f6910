//! History of finished jobs: the process scenario's drain (one
//! `millrace-worker`, N queued no-op jobs) with the history off
//! (`--history-max-len 0`), at its default cap (10,000 entries) and
//! uncapped (every job kept, to measure its memory per 100,000 jobs),
//! alternating so a noisy machine moves all three alike.

use crate::Bench;
use crate::scenarios::process::{drain_with_env, record};
use crate::stats::{Better, Figures};

/// The variants: figure name and `MILLRACE_HISTORY_MAX_LEN`.
const VARIANTS: [(&str, &str); 3] = [
    ("history_off", "0"),
    ("history_capped", "10000"),
    ("history_uncapped", "100000000"),
];

/// Runs each variant `b.runs` times with one worker at `concurrency`.
pub async fn run(b: &Bench, figs: &mut Figures, concurrency: usize) -> anyhow::Result<()> {
    let n = b.sizes.process;
    for run in 0..b.runs {
        for (name, max_len) in VARIANTS {
            let env = [
                ("MILLRACE_HISTORY_MAX_LEN", max_len),
                ("MILLRACE_HISTORY_MAX_AGE", "0s"),
            ];
            let d = drain_with_env(b, 1, concurrency, n, &env).await?;
            b.progress(&format!(
                "{name} run {}: {:.0} jobs/s, {:.2} us Redis CPU/job, {:.2} us worker CPU/job, history {:.2} MB per 100k jobs",
                run + 1,
                d.rate,
                d.cpu_us,
                d.worker_cpu_us,
                d.history_per_100k_mb
            ));
            record(figs, name, &d);
            if name == "history_uncapped" {
                figs.add(
                    "history_mem_per_100k_mb",
                    "MB",
                    Better::Lower,
                    None,
                    d.history_per_100k_mb,
                );
            }
        }
    }
    figs.note(
        "history_off",
        format!("1 worker, concurrency {concurrency}, --history-max-len 0"),
    );
    figs.note("history_capped", "--history-max-len 10000 (the default)");
    figs.note(
        "history_mem_per_100k_mb",
        "MEMORY USAGE of the history stream after an uncapped drain, per 100,000 jobs",
    );
    Ok(())
}
