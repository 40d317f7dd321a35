//! The times of a state (RFC 3339, UTC, as the loader writes them) and Docker's way of saying
//! how long ago they were.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the epoch of `2024-05-01T12:00:00.123456789Z` (the form the loader writes).
pub fn parse(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[10] != b'T' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86400 + hh * 3600 + mm * 60 + ss;
    let nanos = s
        .get(20..s.len() - 1)
        .filter(|f| b[19] == b'.' && !f.is_empty())
        .and_then(|f| format!("{f:0<9}")[..9].parse::<u32>().ok())
        .unwrap_or(0);
    UNIX_EPOCH.checked_add(Duration::new(u64::try_from(secs).ok()?, nanos))
}

/// Docker's `HumanDuration` (go-units): "Less than a second", "3 seconds", "About a minute", …
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (m, h) = (s / 60, s / 3600);
    match () {
        _ if s < 1 => "Less than a second".into(),
        _ if s == 1 => "1 second".into(),
        _ if s < 60 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{} days", h / 24),
        _ if h < 24 * 30 * 2 => format!("{} weeks", h / 24 / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", h / 24 / 365),
    }
}

/// How long ago `t` was (nothing for an unreadable time).
pub fn since(t: &str) -> Option<Duration> {
    SystemTime::now().duration_since(parse(t)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_the_loader_writes() {
        let d = Duration::new(1_700_000_000, 5);
        let s = loader::containers::rfc3339(d);
        assert_eq!(parse(&s), Some(UNIX_EPOCH + d));
        let leap = loader::containers::rfc3339(Duration::new(951_782_400, 0));
        assert_eq!(
            parse(&leap),
            Some(UNIX_EPOCH + Duration::new(951_782_400, 0))
        );
        assert_eq!(parse("yesterday"), None);
    }

    #[test]
    fn durations_read_as_dockers() {
        assert_eq!(human(Duration::from_millis(300)), "Less than a second");
        assert_eq!(human(Duration::from_secs(1)), "1 second");
        assert_eq!(human(Duration::from_secs(42)), "42 seconds");
        assert_eq!(human(Duration::from_secs(90)), "About a minute");
        assert_eq!(human(Duration::from_secs(600)), "10 minutes");
        assert_eq!(human(Duration::from_secs(3600)), "About an hour");
        assert_eq!(human(Duration::from_secs(5 * 86400)), "5 days");
    }
}
