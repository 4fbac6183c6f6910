//! How the CLI talks to people and scripts: aligned tables (colour only on
//! a terminal), short durations ("3m12s"), JSON, the confirmation prompt of
//! destructive commands and the progress bar of bulk ones.

use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use comfy_table::{Attribute, Cell, Color, ContentArrangement, Table, presets};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// True when stdout is a terminal and colour is not turned off
/// (`NO_COLOR`).
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A table with the house style: no borders, bold headers on a terminal,
/// never wrapped when piped.
pub fn table(headers: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    let on_tty = colour();
    if on_tty {
        // Fit wide tables to the terminal, but only to one whose width is
        // known and usable (a fresh pseudo-terminal may report 0 columns).
        let width = crossterm::terminal::size().map_or(0, |(w, _)| w);
        t.set_content_arrangement(if width >= 40 {
            ContentArrangement::Dynamic
        } else {
            ContentArrangement::Disabled
        });
    } else {
        t.force_no_tty();
        t.set_content_arrangement(ContentArrangement::Disabled);
    }
    t.set_header(headers.iter().map(|h| {
        let c = Cell::new(h);
        if on_tty {
            c.add_attribute(Attribute::Bold)
        } else {
            c
        }
    }));
    for col in t.column_iter_mut() {
        col.set_padding((0, 2));
    }
    t
}

/// A table cell coloured `c` when it is `warn` (colour applies only on a
/// terminal: the table drops styles otherwise).
pub fn cell(text: impl ToString, warn: bool, c: Color) -> Cell {
    let cell = Cell::new(text);
    if warn { cell.fg(c) } else { cell }
}

/// Prints a table, without trailing blanks on each line.
pub fn print_table(t: &Table) {
    for line in t.lines() {
        println!("{}", line.trim_end());
    }
}

/// Prints a value as pretty JSON.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A duration in ms as a short human string: "450ms", "12s", "3m12s",
/// "2h3m", "4d2h".
pub fn ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        _ if ms < 1000 => format!("{ms}ms"),
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// An optional duration in ms, or "-".
pub fn opt_ms(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), ms)
}

/// A unix time in ms as RFC 3339 (UTC, seconds).
pub fn at(unix_ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

/// Now as unix ms (the local clock; ages use the server's where it matters).
pub fn local_now_ms() -> u64 {
    millrace_core::queue::unix_ms(SystemTime::now())
}

/// Cuts `s` to at most `max` characters on one line, with "…" when cut.
pub fn clip(s: &str, max: usize) -> String {
    let one_line = s.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut out: String = one_line.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Flags shared by destructive commands.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Confirm {
    /// Do it without asking for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Only show what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What the user decided about a destructive command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Proceed,
    /// `--dry-run`: show only.
    DryRun,
    /// The user said no.
    Declined,
}

/// Asks "`question` [y/N]" on the terminal, unless `--yes` or `--dry-run`
/// decide. Refuses with an error (never hangs) when stdin is not a
/// terminal and `--yes` was not given.
pub fn confirm(flags: Confirm, question: &str) -> anyhow::Result<Decision> {
    if flags.dry_run {
        eprintln!("dry run: nothing was changed");
        return Ok(Decision::DryRun);
    }
    if flags.yes {
        return Ok(Decision::Proceed);
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "refusing to {question} without confirmation: stdin is not a terminal (pass --yes to go ahead, or --dry-run to only show)"
        );
    }
    let mut err = std::io::stderr();
    write!(err, "{question}? [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    if matches!(answer.trim().to_lowercase().as_str(), "y" | "yes") {
        Ok(Decision::Proceed)
    } else {
        eprintln!("aborted: nothing was changed");
        Ok(Decision::Declined)
    }
}

/// A progress bar of `len` steps on stderr, drawn only on a terminal.
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(len),
        if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// The PAUSED cell: `no`, `yes`, or `yes (12m): deploy freeze` with how
/// long ago and why.
pub fn paused(pause: Option<&millrace_core::PauseInfo>, now_ms: u64) -> String {
    let Some(p) = pause else {
        return "no".to_owned();
    };
    let mut out = "yes".to_owned();
    if let Some(since) = p.since_ms {
        out.push_str(&format!(" ({})", ms(now_ms.saturating_sub(since))));
    }
    if let Some(reason) = &p.reason {
        out.push_str(": ");
        out.push_str(&clip(reason, 40));
    }
    out
}

/// "1 job" / "3 jobs".
pub fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_short() {
        assert_eq!(ms(450), "450ms");
        assert_eq!(ms(12_000), "12s");
        assert_eq!(ms(192_000), "3m12s");
        assert_eq!(ms(2 * 3_600_000 + 3 * 60_000), "2h3m");
        assert_eq!(ms(4 * 86_400_000 + 2 * 3_600_000), "4d2h");
        assert_eq!(opt_ms(None), "-");
    }

    #[test]
    fn clipping_keeps_one_line() {
        assert_eq!(clip("a\nb", 10), "a b");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
