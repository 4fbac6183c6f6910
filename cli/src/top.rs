//! `millrace top`: a live view of every queue, refreshed every second, with
//! rates computed from the queues' counters; `q` (or Esc, Ctrl-C) quits.
//! `--once` prints one frame (rates measured over one interval) and exits,
//! for scripts and tests; when stdout is not a terminal, frames are printed
//! one after another.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use comfy_table::{Cell, Color};
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::{cursor, execute, queue, terminal};
use millrace_core::inspect::QueueStats;
use serde::Serialize;

use crate::output::{self, cell};
use crate::{Ctx, duration, queues};

/// Flags of `millrace top`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one frame and exit.
    #[arg(long)]
    once: bool,
    /// Refresh interval (and the window rates are measured over).
    #[arg(long, value_parser = duration, default_value = "1s")]
    interval: Duration,
}

/// One queue in a frame.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    ready: u64,
    in_flight: u64,
    delayed: u64,
    retrying: Option<u64>,
    dead: u64,
    consumers: u64,
    lag_ms: Option<u64>,
    paused: bool,
    /// Why it was paused (`millrace pause --reason`).
    pause_reason: Option<String>,
    /// Jobs processed per second over the last interval.
    processed_per_sec: f64,
    /// Failed attempts (retried or dead-lettered) per second.
    failed_per_sec: f64,
}

struct Sample {
    at: Instant,
    stats: Vec<QueueStats>,
}

fn rows(prev: Option<&Sample>, now: &Sample) -> Vec<Row> {
    now.stats
        .iter()
        .map(|s| {
            let before = prev.and_then(|p| p.stats.iter().find(|b| b.name == s.name));
            let secs = prev.map_or(0.0, |p| now.at.duration_since(p.at).as_secs_f64());
            let rate = |new: u64, old: Option<u64>| match old {
                Some(old) if secs > 0.0 => new.saturating_sub(old) as f64 / secs,
                _ => 0.0,
            };
            Row {
                name: s.name.clone(),
                ready: s.ready,
                in_flight: s.in_flight,
                delayed: s.scheduled + s.retrying.unwrap_or(0),
                retrying: s.retrying,
                dead: s.dead,
                consumers: s.consumers,
                lag_ms: s.lag_ms,
                paused: s.paused,
                pause_reason: s.pause.as_ref().and_then(|p| p.reason.clone()),
                processed_per_sec: rate(s.processed, before.map(|b| b.processed)),
                failed_per_sec: rate(
                    s.retried + s.dead_lettered,
                    before.map(|b| b.retried + b.dead_lettered),
                ),
            }
        })
        .collect()
}

fn render(ctx: &Ctx, rows: &[Row], interactive: bool) -> Vec<String> {
    let clock = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let mut lines = vec![format!(
        "millrace top  {}  prefix {}  {clock}{}",
        ctx.url,
        ctx.prefix,
        if interactive { "  (q to quit)" } else { "" }
    )];
    if rows.is_empty() {
        lines.push("no queues known yet".to_owned());
        return lines;
    }
    let mut t = output::table(&[
        "QUEUE",
        "READY",
        "IN FLIGHT",
        "DELAYED",
        "RETRYING",
        "DEAD",
        "CONSUMERS",
        "LAG",
        "DONE/S",
        "FAILED/S",
        "PAUSED",
    ]);
    for r in rows {
        t.add_row(vec![
            Cell::new(&r.name),
            Cell::new(r.ready),
            Cell::new(r.in_flight),
            Cell::new(r.delayed),
            Cell::new(r.retrying.map_or_else(|| "?".into(), |n| n.to_string())),
            cell(r.dead, r.dead > 0, Color::Red),
            cell(r.consumers, r.consumers == 0 && r.ready > 0, Color::Red),
            cell(
                output::opt_ms(r.lag_ms),
                r.lag_ms.unwrap_or(0) > 60_000,
                Color::Yellow,
            ),
            Cell::new(format!("{:.1}", r.processed_per_sec)),
            cell(
                format!("{:.1}", r.failed_per_sec),
                r.failed_per_sec > 0.0,
                Color::Yellow,
            ),
            cell(
                match (&r.pause_reason, r.paused) {
                    (Some(why), true) => format!("yes: {}", output::clip(why, 30)),
                    (None, true) => "yes".to_owned(),
                    (_, false) => "no".to_owned(),
                },
                r.paused,
                Color::Yellow,
            ),
        ]);
    }
    lines.extend(t.lines().map(|l| l.trim_end().to_owned()));
    lines
}

async fn sample(ctx: &mut Ctx) -> anyhow::Result<Sample> {
    Ok(Sample {
        stats: queues::all_stats(ctx).await?,
        at: Instant::now(),
    })
}

/// Restores the terminal when the live view ends, however it ends.
struct Screen;

impl Screen {
    fn enter() -> anyhow::Result<Self> {
        terminal::enable_raw_mode()?;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )?;
        Ok(Self)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = execute!(
            std::io::stdout(),
            cursor::Show,
            terminal::LeaveAlternateScreen
        );
        let _ = terminal::disable_raw_mode();
    }
}

/// Waits up to `d` for a quit key; true when one came.
fn quit_within(d: Duration) -> anyhow::Result<bool> {
    let deadline = Instant::now() + d;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !event::poll(left)? {
            return Ok(false);
        }
        if let Event::Key(k) = event::read()? {
            if k.kind != KeyEventKind::Press {
                continue;
            }
            let ctrl_c =
                k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
            if ctrl_c || matches!(k.code, KeyCode::Char('q' | 'Q') | KeyCode::Esc) {
                return Ok(true);
            }
        }
    }
}

/// Runs `millrace top`.
pub async fn run(ctx: &mut Ctx, a: Args) -> anyhow::Result<()> {
    let mut prev = sample(ctx).await?;
    if a.once {
        tokio::time::sleep(a.interval).await;
        let now = sample(ctx).await?;
        let rows = rows(Some(&prev), &now);
        if ctx.json {
            return output::print_json(&rows);
        }
        for l in render(ctx, &rows, false) {
            println!("{l}");
        }
        return Ok(());
    }
    let interactive =
        std::io::stdout().is_terminal() && std::io::stdin().is_terminal() && !ctx.json;
    if !interactive {
        loop {
            tokio::time::sleep(a.interval).await;
            let now = sample(ctx).await?;
            let rows = rows(Some(&prev), &now);
            if ctx.json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                for l in render(ctx, &rows, false) {
                    println!("{l}");
                }
                println!();
            }
            prev = now;
        }
    }
    let _screen = Screen::enter()?;
    let mut shown = rows(None, &prev);
    loop {
        let mut out = std::io::stdout();
        queue!(
            out,
            cursor::MoveTo(0, 0),
            terminal::Clear(terminal::ClearType::All)
        )?;
        for l in render(ctx, &shown, true) {
            write!(out, "{l}\r\n")?;
        }
        out.flush()?;
        if quit_within(a.interval)? {
            return Ok(());
        }
        let now = sample(ctx).await?;
        shown = rows(Some(&prev), &now);
        prev = now;
    }
}
