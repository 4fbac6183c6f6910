//! `millrace-worker`: runs the job catalogue of `millrace-jobs` with
//! [`millrace_worker::runner::Runner`], which gives it its flags and
//! `MILLRACE_*` variables, logging, probes, signals and exit codes.

use millrace_jobs as jobs;
use millrace_worker::runner::Runner;

/// mimalloc: a worker allocates ~50 times per job (reply parsing, tasks,
/// strings); glibc malloc/free were about a quarter of its CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    Runner::new(|worker| {
        worker
            // The catalogue's jobs (`Job::QUEUE` = `default`) run on
            // whatever queues `--queues` names.
            .allow_unconsumed_jobs()
            .register(jobs::noop)
            .register(jobs::sleep)
            .register(jobs::flaky)
            .register(jobs::fail)
            .register(jobs::panic)
            .register(jobs::crash)
    })
    .name("millrace-worker")
    .run()
}
