//! `WorkerConfig` from `MILLRACE_*` variables, parsed as the
//! `millrace-worker` binary parses them (humantime durations, comma-separated
//! queues), each bad value named in a one-line error.

use std::str::FromStr;
use std::time::Duration;

use millrace_core::connect::{Durability, TlsConfig};
use millrace_core::{ConfigError, DeadRetention, HistoryRetention};

use super::WorkerConfig;

/// The variables [`WorkerConfig::from_env`] reads, with what they set.
pub const VARIABLES: &[(&str, &str)] = &[
    ("MILLRACE_REDIS_URL", "redis_url"),
    ("MILLRACE_REDIS_CLUSTER", "redis_cluster (1 or true)"),
    ("MILLRACE_WAIT_REPLICAS", "durability.replicas (0: none)"),
    ("MILLRACE_WAIT_TIMEOUT", "durability.timeout (default 1s)"),
    ("MILLRACE_TLS_CA_FILE", "tls.ca_file"),
    ("MILLRACE_TLS_CERT_FILE", "tls.cert_file"),
    ("MILLRACE_TLS_KEY_FILE", "tls.key_file"),
    ("MILLRACE_PREFIX", "prefix"),
    ("MILLRACE_QUEUES", "queues (comma-separated)"),
    ("MILLRACE_CONCURRENCY", "concurrency"),
    ("MILLRACE_LEASE", "lease"),
    (
        "MILLRACE_RENEW_EVERY",
        "renew_every (default: a third of the lease)",
    ),
    ("MILLRACE_RECLAIM_EVERY", "reclaim_every"),
    ("MILLRACE_MAX_DELIVERIES", "max_deliveries"),
    ("MILLRACE_GRACE", "grace"),
    (
        "MILLRACE_BLOCK",
        "block (default: 2s, or half the lease when shorter)",
    ),
    ("MILLRACE_JOB_TIMEOUT", "job_timeout"),
    ("MILLRACE_UNKNOWN_JOB_WINDOW", "unknown_job_window"),
    ("MILLRACE_DEAD_MAX_LEN", "dead_retention.max_len"),
    ("MILLRACE_DEAD_MAX_AGE", "dead_retention.max_age"),
    ("MILLRACE_SAMPLE_EVERY", "sample_every"),
    (
        "MILLRACE_HISTORY_MAX_LEN",
        "history.max_len (0 turns the history off)",
    ),
    ("MILLRACE_HISTORY_MAX_AGE", "history.max_age"),
    ("MILLRACE_RESULT_TTL", "result_ttl"),
    ("MILLRACE_LANE_WEIGHTS", "lane_weights (high,default,low)"),
];

/// Parses a duration as the binary does (`30s`, `1m 30s`, `15min`, `30days`).
pub fn parse_duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

/// Reads variables through `lookup`; an empty value counts as unset.
struct Vars<F>(F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    fn raw(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    fn parse<T>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.raw(name)
            .map(|v| v.trim().parse().map_err(|e| bad(name, &v, e)))
            .transpose()
    }

    fn duration(&self, name: &str) -> Result<Option<Duration>, ConfigError> {
        self.raw(name)
            .map(|v| parse_duration(v.trim()).map_err(|e| bad(name, &v, e)))
            .transpose()
    }
}

/// A yes/no variable: `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`.
fn parse_flag(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn bad(name: &str, value: &str, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid(format!("{name}={value:?}: {e}"))
}

impl WorkerConfig {
    /// The configuration from the `MILLRACE_*` environment variables the
    /// `millrace-worker` binary reads ([`VARIABLES`]), defaults for the
    /// unset ones, validated. A bad value fails in one line naming the
    /// variable (`MILLRACE_LEASE="soon": expected number at 0`); an invalid
    /// combination fails with [`validate`](Self::validate)'s message.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with variables read through `lookup`
    /// (tests, or a source other than the process environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let v = Vars(lookup);
        let mut c = Self::default();
        if let Some(url) = v.raw("MILLRACE_REDIS_URL") {
            c.redis_url = url;
        }
        if let Some(on) = v.raw("MILLRACE_REDIS_CLUSTER") {
            c.redis_cluster = parse_flag(&on).ok_or_else(|| {
                bad(
                    "MILLRACE_REDIS_CLUSTER",
                    &on,
                    "expected 1, true, 0 or false",
                )
            })?;
        }
        if let Some(n) = v.parse::<u32>("MILLRACE_WAIT_REPLICAS")? {
            let timeout = v.duration("MILLRACE_WAIT_TIMEOUT")?;
            c.durability = Durability::new(n, timeout.unwrap_or(Duration::from_secs(1)));
        }
        c.tls = TlsConfig::from_lookup(|name| v.raw(name));
        if let Some(prefix) = v.raw("MILLRACE_PREFIX") {
            c.prefix = prefix;
        }
        if let Some(queues) = v.raw("MILLRACE_QUEUES") {
            c.queues = queues.split(',').map(|q| q.trim().to_owned()).collect();
        }
        if let Some(n) = v.parse("MILLRACE_CONCURRENCY")? {
            c.concurrency = n;
        }
        let lease = v.duration("MILLRACE_LEASE")?.unwrap_or(c.lease);
        c = c.with_lease(
            lease,
            v.duration("MILLRACE_RENEW_EVERY")?,
            v.duration("MILLRACE_BLOCK")?,
        );
        if let Some(d) = v.duration("MILLRACE_RECLAIM_EVERY")? {
            c.reclaim_every = d;
        }
        if let Some(n) = v.parse("MILLRACE_MAX_DELIVERIES")? {
            c.max_deliveries = n;
        }
        if let Some(d) = v.duration("MILLRACE_GRACE")? {
            c.grace = d;
        }
        c.job_timeout = v.duration("MILLRACE_JOB_TIMEOUT")?;
        if let Some(d) = v.duration("MILLRACE_UNKNOWN_JOB_WINDOW")? {
            c.unknown_job_window = d;
        }
        c.dead_retention = DeadRetention::new(
            v.parse("MILLRACE_DEAD_MAX_LEN")?
                .unwrap_or(c.dead_retention.max_len),
            v.duration("MILLRACE_DEAD_MAX_AGE")?
                .unwrap_or(c.dead_retention.max_age),
        );
        if let Some(w) = v.parse("MILLRACE_LANE_WEIGHTS")? {
            c.lane_weights = Some(w);
        }
        if let Some(d) = v.duration("MILLRACE_SAMPLE_EVERY")? {
            c.sample_every = d;
        }
        c.history = HistoryRetention::new(
            v.parse("MILLRACE_HISTORY_MAX_LEN")?
                .unwrap_or(c.history.max_len),
            v.duration("MILLRACE_HISTORY_MAX_AGE")?
                .unwrap_or(c.history.max_age),
        );
        if let Some(d) = v.duration("MILLRACE_RESULT_TTL")? {
            c.result_ttl = d;
        }
        c.validate()?;
        Ok(c)
    }

    /// Sets the lease, and the renew interval and read block that follow
    /// from it unless given: a third of the lease, and 2 s or half the lease
    /// when that is shorter. The binary's flags and
    /// [`from_env`](Self::from_env) share this rule.
    #[must_use]
    pub fn with_lease(
        mut self,
        lease: Duration,
        renew_every: Option<Duration>,
        block: Option<Duration>,
    ) -> Self {
        self.lease = lease;
        self.renew_every = renew_every.unwrap_or(lease / 3);
        self.block = block.unwrap_or_else(|| Duration::from_secs(2).min(lease / 2));
        self
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<WorkerConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        WorkerConfig::from_lookup(|name| map.get(name).cloned())
    }

    fn ok(vars: &[(&str, &str)]) -> WorkerConfig {
        from(vars).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(vars: &[(&str, &str)]) -> String {
        match from(vars) {
            Ok(c) => panic!("accepted {vars:?}: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn nothing_set_is_the_default() {
        let c = ok(&[]);
        let d = WorkerConfig::default();
        assert_eq!(
            (c.redis_url, c.queues, c.lease, c.renew_every, c.block),
            (d.redis_url, d.queues, d.lease, d.renew_every, d.block)
        );
        assert_eq!(c.dead_retention, d.dead_retention);
    }

    #[test]
    fn every_variable_is_read() {
        let c = ok(&[
            ("MILLRACE_REDIS_URL", "redis://:pw@h:1/2"),
            ("MILLRACE_REDIS_CLUSTER", "1"),
            ("MILLRACE_WAIT_REPLICAS", "1"),
            ("MILLRACE_WAIT_TIMEOUT", "250ms"),
            ("MILLRACE_PREFIX", "mr"),
            ("MILLRACE_QUEUES", "billing, email"),
            ("MILLRACE_CONCURRENCY", "8"),
            ("MILLRACE_LEASE", "1m"),
            ("MILLRACE_RENEW_EVERY", "10s"),
            ("MILLRACE_RECLAIM_EVERY", "7s"),
            ("MILLRACE_MAX_DELIVERIES", "3"),
            ("MILLRACE_GRACE", "5s"),
            ("MILLRACE_BLOCK", "1s"),
            ("MILLRACE_JOB_TIMEOUT", "2m"),
            ("MILLRACE_UNKNOWN_JOB_WINDOW", "0s"),
            ("MILLRACE_DEAD_MAX_LEN", "10"),
            ("MILLRACE_DEAD_MAX_AGE", "1day"),
            ("MILLRACE_SAMPLE_EVERY", "500ms"),
            ("MILLRACE_TLS_CA_FILE", "/ca.pem"),
            ("MILLRACE_TLS_CERT_FILE", "/c.pem"),
            ("MILLRACE_TLS_KEY_FILE", "/k.pem"),
        ]);
        let s = Duration::from_secs;
        assert_eq!(c.redis_url, "redis://:pw@h:1/2");
        assert!(c.redis_cluster);
        assert_eq!(c.durability, Durability::new(1, Duration::from_millis(250)));
        assert_eq!(c.prefix, "mr");
        assert_eq!(c.queues, ["billing", "email"]);
        assert_eq!(c.concurrency, 8);
        assert_eq!((c.lease, c.renew_every, c.block), (s(60), s(10), s(1)));
        assert_eq!((c.reclaim_every, c.grace), (s(7), s(5)));
        assert_eq!(c.max_deliveries, 3);
        assert_eq!(c.job_timeout, Some(s(120)));
        assert_eq!(c.unknown_job_window, Duration::ZERO);
        assert_eq!(c.dead_retention, DeadRetention::new(10, s(86_400)));
        assert_eq!(c.sample_every, Duration::from_millis(500));
        assert_eq!(
            c.tls,
            TlsConfig::default()
                .ca_file("/ca.pem")
                .client_cert("/c.pem", "/k.pem")
        );
    }

    #[test]
    fn renew_and_block_follow_the_lease_like_the_binary() {
        let c = ok(&[("MILLRACE_LEASE", "3s")]);
        assert_eq!(c.renew_every, Duration::from_secs(1));
        assert_eq!(c.block, Duration::from_millis(1500));
    }

    #[test]
    fn a_bad_value_names_the_variable_in_one_line() {
        let e = err(&[("MILLRACE_LEASE", "soon")]);
        assert!(e.starts_with("MILLRACE_LEASE=\"soon\": "), "{e}");
        assert!(!e.contains('\n'));
        let e = err(&[("MILLRACE_CONCURRENCY", "many")]);
        assert_eq!(
            e,
            "MILLRACE_CONCURRENCY=\"many\": invalid digit found in string"
        );
        let e = err(&[("MILLRACE_DEAD_MAX_LEN", "-1")]);
        assert!(e.starts_with("MILLRACE_DEAD_MAX_LEN=\"-1\""), "{e}");
        assert_eq!(
            err(&[("MILLRACE_REDIS_CLUSTER", "maybe")]),
            "MILLRACE_REDIS_CLUSTER=\"maybe\": expected 1, true, 0 or false"
        );
    }

    #[test]
    fn invalid_combinations_get_validates_messages() {
        assert_eq!(
            err(&[("MILLRACE_LEASE", "10s"), ("MILLRACE_RENEW_EVERY", "15s")]),
            "lease (10s) must exceed the renew interval (15s)"
        );
        assert_eq!(
            err(&[("MILLRACE_CONCURRENCY", "0")]),
            "concurrency (0) must be from 1 to 10000"
        );
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = ok(&[("MILLRACE_LEASE", ""), ("MILLRACE_QUEUES", " ")]);
        assert_eq!(c.lease, WorkerConfig::default().lease);
    }
}
