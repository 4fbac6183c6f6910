//! Fire-time computation and planning, DST included.

use std::time::Duration;

use jiff::civil::date;
use jiff::tz::TimeZone;

use super::*;

/// Unix ms of a wall-clock time in `tz` (the earlier one when it repeats).
fn at(tz: &str, y: i16, mo: i8, d: i8, h: i8, mi: i8) -> u64 {
    let zone = TimeZone::get(tz).unwrap_or_else(|e| panic!("{e}"));
    let z = zone
        .to_ambiguous_zoned(date(y, mo, d).at(h, mi, 0, 0))
        .earlier()
        .unwrap_or_else(|e| panic!("{e}"));
    u64::try_from(z.timestamp().as_millisecond()).unwrap_or_else(|e| panic!("{e}"))
}

fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> u64 {
    at("UTC", y, mo, d, h, mi)
}

fn timing(expr: &str, tz: &str) -> Timing {
    Timing::new(expr, tz).unwrap_or_else(|e| panic!("{e}"))
}

const H: u64 = 3_600_000;

#[test]
fn seconds_are_optional_and_the_zone_applies() {
    let t = timing("0 */5 * * * *", "UTC");
    assert_eq!(
        t.next_after(utc(2026, 1, 1, 0, 1)),
        Some(utc(2026, 1, 1, 0, 5))
    );
    let t = timing("0 8 * * *", "Europe/Paris");
    // 08:00 in Paris in winter is 07:00 UTC.
    assert_eq!(
        t.next_after(utc(2026, 1, 1, 0, 0)),
        Some(utc(2026, 1, 1, 7, 0))
    );
    // Strictly after: a fire time is not its own next.
    let f = utc(2026, 1, 1, 7, 0);
    assert_eq!(t.next_after(f), Some(f + 24 * H));
}

#[test]
fn a_fixed_time_in_the_spring_gap_fires_once_just_after_it() {
    // Europe/Paris, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does
    // not exist that day.
    let t = timing("0 30 2 * * *", "Europe/Paris");
    let before = at("Europe/Paris", 2026, 3, 28, 12, 0);
    let first = t.next_after(before).unwrap_or_default();
    assert_eq!(
        first,
        utc(2026, 3, 29, 1, 0),
        "03:00 CEST, the end of the gap"
    );
    // The next day is back to 02:30 (now CEST: 00:30 UTC).
    assert_eq!(t.next_after(first), Some(utc(2026, 3, 30, 0, 30)));
}

#[test]
fn a_fixed_time_in_the_autumn_overlap_fires_once() {
    // Europe/Paris, 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30
    // happens twice (00:30 and 01:30 UTC).
    let t = timing("0 30 2 * * *", "Europe/Paris");
    let day = t.due(utc(2026, 10, 24, 12, 0), utc(2026, 10, 26, 12, 0), 10);
    assert_eq!(
        day.fires,
        [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
        "once on the 25th (the first 02:30), then 02:30 CET"
    );
}

#[test]
fn hourly_fires_follow_real_hours_across_dst() {
    let t = timing("0 0 * * * *", "America/New_York");
    // 2026-03-08: 02:00 EST → 03:00 EDT, a 23-hour day.
    let spring = t.due(
        at("America/New_York", 2026, 3, 8, 0, 0),
        at("America/New_York", 2026, 3, 9, 0, 0),
        100,
    );
    assert_eq!(spring.fires.len(), 23);
    // 2026-11-01: 02:00 EDT → 01:00 EST, a 25-hour day: 01:00 twice.
    let autumn = t.due(
        at("America/New_York", 2026, 11, 1, 0, 0),
        at("America/New_York", 2026, 11, 2, 0, 0),
        100,
    );
    assert_eq!(autumn.fires.len(), 25);
    for w in autumn.fires.windows(2) {
        assert_eq!(w[1] - w[0], H, "one real hour apart: {:?}", autumn.fires);
    }
}

#[test]
fn due_is_bounded_to_the_latest_fires() {
    let t = timing("* * * * * *", "UTC");
    let now = utc(2026, 5, 1, 12, 0);
    let due = t.due(now - H, now, 100);
    assert!(due.more);
    assert_eq!(due.fires.len(), 100);
    assert_eq!(due.fires.last(), Some(&now));
    assert_eq!(due.fires.first(), Some(&(now - 99_000)));
    let few = t.due(now - 5_000, now, 100);
    assert!(!few.more);
    assert_eq!(
        few.fires,
        [now - 4000, now - 3000, now - 2000, now - 1000, now]
    );
}

fn claim(p: Plan) -> Claim {
    match p {
        Plan::Claim(c) => c,
        Plan::Wait { next } => panic!("expected a claim, got a wait until {next:?}"),
    }
}

#[test]
fn missed_fires_follow_the_policy() {
    let t = timing("0 * * * * *", "UTC");
    let now = utc(2026, 5, 1, 12, 0) + 5_000; // 5 s after a fire
    let cursor = Some(now - 30 * 60_000 - 5_000); // 30 minutes ago, on a fire
    let grace = Duration::from_secs(10);
    let skip = claim(plan(&t, Missed::Skip, grace, cursor, now));
    // The fire 5 s ago is on time; the 29 before it were missed.
    assert_eq!(skip.fires, [now - 5_000]);
    assert_eq!(skip.dropped, 29);
    assert_eq!(skip.cursor, Some(now - 5_000));
    assert_eq!(skip.expected, cursor);
    let once = claim(plan(&t, Missed::Once, grace, cursor, now));
    assert_eq!(once.fires, [now - 65_000, now - 5_000]);
    let all = claim(plan(&t, Missed::All, grace, cursor, now));
    assert_eq!(all.fires.len(), 30);
    assert_eq!(all.dropped, 0);
    // Nothing on time: skip enqueues nothing but still moves the cursor.
    let later = now + 30_000;
    let skip = claim(plan(&t, Missed::Skip, grace, Some(now - 65_000), later));
    assert!(skip.fires.is_empty());
    assert_eq!(skip.cursor, Some(now - 5_000));
    let once = claim(plan(&t, Missed::Once, grace, Some(now - 65_000), later));
    assert_eq!(once.fires, [now - 5_000]);
}

#[test]
fn a_new_schedule_starts_from_now_and_then_waits() {
    let t = timing("0 * * * * *", "UTC");
    let now = utc(2026, 5, 1, 12, 0) + 1;
    let first = claim(plan(&t, Missed::All, DEFAULT_GRACE, None, now));
    assert_eq!((first.expected, first.cursor), (None, None));
    assert!(first.fires.is_empty());
    assert_eq!(
        plan(&t, Missed::All, DEFAULT_GRACE, Some(now), now + 10),
        Plan::Wait {
            next: Some(utc(2026, 5, 1, 12, 1))
        }
    );
}

#[test]
fn bad_expressions_zones_names_and_policies_say_what_is_wrong() {
    let e = Timing::new("61 * * * *", "UTC").unwrap_err().to_string();
    assert!(
        e.starts_with("invalid cron expression \"61 * * * *\": "),
        "{e}"
    );
    let e = Timing::new("0 0 30 2 *", "UTC").unwrap_err().to_string();
    assert_eq!(e, "invalid cron expression \"0 0 30 2 *\": it never fires");
    let e = Timing::new("* * * * *", "Mars/Olympus")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "unknown time zone \"Mars/Olympus\": use an IANA name such as Europe/Paris, America/New_York or UTC"
    );
    for bad in ["", "a b", "a=b", "a@b", "x[", &"x".repeat(129)] {
        assert!(validate_name(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        "sometimes".parse::<Missed>().unwrap_err().to_string(),
        "invalid missed-fire policy \"sometimes\": use skip, once or all"
    );
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Digest {
    team: u32,
}

impl Job for Digest {
    const NAME: &'static str = "digest";
    const QUEUE: &'static str = "mail";
}

#[test]
fn definitions_take_the_jobs_name_and_queue_unless_told() {
    let s = Schedule::cron("0 0 8 * * *")
        .and_then(|s| s.timezone("Europe/Paris"))
        .unwrap_or_else(|e| panic!("{e}"));
    let e = s.definition(|_| None).unwrap_err().to_string();
    assert_eq!(e, "schedule \"0 0 8 * * *\": no job: call .job(..)");
    let def = s
        .clone()
        .job(Digest { team: 7 })
        .definition(|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (def.name.as_str(), def.queue.as_str(), def.payload.as_str()),
        ("digest", "mail", r#"{"team":7}"#)
    );
    assert_eq!(def.tz, "Europe/Paris");
    let def = s
        .clone()
        .job(Digest { team: 7 })
        .name("morning")
        .queue("reports")
        .definition(|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (def.name.as_str(), def.queue.as_str()),
        ("morning", "reports")
    );
    let e = s
        .clone()
        .job_named("noop", "{")
        .definition(|_| Some("default".into()))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("schedule \"noop\": payload is not JSON"),
        "{e}"
    );
    let e = s
        .job_named("nope", "{}")
        .definition(|_| None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "schedule \"nope\": no job named `nope` is registered here: register it or name the queue"
    );
}
