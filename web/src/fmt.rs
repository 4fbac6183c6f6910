//! Small text helpers for pages: ages, clipped errors, counts.

/// An age in ms as two units at most: "0.4s", "12s", "3m 12s", "2h 3m",
/// "4d 2h".
pub(crate) fn age(ms: u64) -> String {
    let s = ms / 1000;
    if ms < 1000 {
        return format!("0.{}s", ms / 100);
    }
    let (big, small, a, b) = match s {
        0..60 => return format!("{s}s"),
        60..3600 => (s / 60, s % 60, "m", "s"),
        3600..86_400 => (s / 3600, s % 3600 / 60, "h", "m"),
        _ => (s / 86_400, s % 86_400 / 3600, "d", "h"),
    };
    format!("{big}{a} {small}{b}")
}

/// An optional age, or "–".
pub(crate) fn opt_age(ms: Option<u64>) -> String {
    ms.map_or_else(|| "–".to_owned(), age)
}

/// `s` on one line, cut to `max` characters with "…".
pub(crate) fn clip(s: &str, max: usize) -> String {
    let line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.chars().count() <= max {
        line
    } else {
        line.chars()
            .take(max.saturating_sub(1))
            .chain(['…'])
            .collect()
    }
}

/// "1 dead job" / "3 dead jobs".
pub(crate) fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A unix time in ms as RFC 3339 (UTC, seconds).
pub(crate) fn at(unix_ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A per-second rate: "0", "0.4", "12", "1.2k".
pub(crate) fn rate(per_sec: f64) -> String {
    match per_sec {
        r if r <= 0.0 => "0".to_owned(),
        r if r < 10.0 => format!("{r:.1}"),
        r if r < 1000.0 => format!("{r:.0}"),
        r => format!("{:.1}k", r / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_rates_read_short() {
        assert_eq!(age(400), "0.4s");
        assert_eq!(age(12_000), "12s");
        assert_eq!(age(192_000), "3m 12s");
        assert_eq!(age(90_000_000), "1d 1h");
        assert_eq!(clip("a\nbcdef", 4), "a b…");
        assert_eq!(rate(0.25), "0.2");
        assert_eq!(rate(2500.0), "2.5k");
        assert_eq!(count(1, "job", "jobs"), "1 job");
    }
}
