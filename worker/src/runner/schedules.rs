//! The runner's `--schedule` flag: `NAME=CRON=JOB=JSON`, with options in
//! brackets after the name (`NAME[tz:Europe/Paris,missed:once,queue:q,grace:30s]`).
//! Cron expressions, time zones and job names hold no `=`; the JSON,
//! last, may.

use millrace_core::schedule::{Missed, Schedule, validate_name};

use super::RunnerError;

/// What the flag looks like, for messages.
const FORM: &str = "expected NAME=CRON=JOB=JSON, e.g. digest=0 */5 * * * *=noop={}";

/// The schedule a `--schedule` flag describes. Its queue is the `queue:`
/// option, else `default_queue` (the first of `--queues`), else the
/// registered job's own queue.
pub(super) fn parse(spec: &str, default_queue: Option<&str>) -> Result<Schedule, RunnerError> {
    let err = |reason: String| RunnerError::ScheduleFlag {
        spec: spec.to_owned(),
        reason,
    };
    let mut parts = spec.splitn(4, '=');
    let (Some(head), Some(cron), Some(job)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(err(FORM.to_owned()));
    };
    let payload = parts.next().unwrap_or("{}");
    let (name, options) = match head.split_once('[') {
        Some((name, rest)) => match rest.strip_suffix(']') {
            Some(options) => (name, options),
            None => {
                return Err(err(
                    "options go in brackets after the name: NAME[tz:Europe/Paris,missed:once]"
                        .to_owned(),
                ));
            }
        },
        None => (head, ""),
    };
    validate_name(name).map_err(|e| err(e.to_string()))?;
    let job = job.trim();
    if job.is_empty() {
        return Err(err(format!("no job name: {FORM}")));
    }
    if let Err(e) = serde_json::from_str::<serde_json::Value>(payload) {
        return Err(err(format!("the payload is not JSON: {e}")));
    }
    let mut schedule = Schedule::cron(cron.trim())
        .map_err(|e| err(e.to_string()))?
        .name(name)
        .job_named(job, payload);
    let mut queue = default_queue;
    for option in options.split(',').filter(|o| !o.trim().is_empty()) {
        let Some((key, value)) = option.split_once(':') else {
            return Err(err(format!("option {option:?} is not key:value")));
        };
        let value = value.trim();
        schedule = match key.trim() {
            "tz" => schedule.timezone(value).map_err(|e| err(e.to_string()))?,
            "missed" => schedule.missed(value.parse::<Missed>().map_err(|e| err(e.to_string()))?),
            "grace" => schedule.grace(
                crate::config::parse_duration(value)
                    .map_err(|e| err(format!("grace {value:?}: {e}")))?,
            ),
            "queue" => {
                queue = Some(value);
                schedule
            }
            other => {
                return Err(err(format!(
                    "unknown option {other:?} (known: tz, missed, queue, grace)"
                )));
            }
        };
    }
    if let Some(q) = queue {
        schedule = schedule.queue(q);
    }
    Ok(schedule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(spec: &str, default_queue: Option<&str>) -> millrace_core::schedule::ScheduleDef {
        parse(spec, default_queue)
            .and_then(|s| {
                s.definition(|_| Some("default".into()))
                    .map_err(|e| RunnerError::Worker(e.into()))
            })
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_flag_names_its_schedule_cron_job_and_payload() {
        let d = def(r#"tick=* * * * * *=noop={"pad":"a=b"}"#, None);
        assert_eq!(
            (
                d.name.as_str(),
                d.cron.as_str(),
                d.job.as_str(),
                d.payload.as_str()
            ),
            ("tick", "* * * * * *", "noop", r#"{"pad":"a=b"}"#)
        );
        assert_eq!(
            (d.tz.as_str(), d.queue.as_str(), d.missed),
            ("UTC", "default", Missed::Skip)
        );
        let d = def(
            "d[tz:Europe/Paris, missed:all,queue:reports,grace:1m]=0 8 * * *=noop",
            Some("work"),
        );
        assert_eq!(
            (d.tz.as_str(), d.queue.as_str(), d.missed),
            ("Europe/Paris", "reports", Missed::All)
        );
        assert_eq!((d.grace_ms, d.payload.as_str()), (60_000, "{}"));
        assert_eq!(def("d=0 8 * * *=noop={}", Some("work")).queue, "work");
    }

    #[test]
    fn a_bad_flag_says_what_is_wrong() {
        let e = |spec: &str| parse(spec, None).map(|_| ()).unwrap_err().to_string();
        assert_eq!(e("tick"), format!("invalid --schedule \"tick\": {FORM}"));
        assert!(
            e("t=61 * * * *=noop={}").starts_with(
                "invalid --schedule \"t=61 * * * *=noop={}\": invalid cron expression"
            )
        );
        assert!(
            e("t[tz:Nowhere/City]=* * * * *=noop").contains("unknown time zone \"Nowhere/City\"")
        );
        assert!(
            e("t[missed:twice]=* * * * *=noop")
                .ends_with("invalid missed-fire policy \"twice\": use skip, once or all")
        );
        assert!(
            e("t[colour:red]=* * * * *=noop")
                .ends_with("unknown option \"colour\" (known: tz, missed, queue, grace)")
        );
        assert!(
            e("t[tz:UTC=* * * * *=noop").ends_with(
                "options go in brackets after the name: NAME[tz:Europe/Paris,missed:once]"
            )
        );
        assert!(e("t=* * * * *=noop={").contains("the payload is not JSON"));
        assert!(e("a b=* * * * *=noop").contains("invalid schedule name \"a b\""));
        assert!(e("t=* * * * *= ={}").contains("no job name"));
    }
}
