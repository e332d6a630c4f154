//! UTC calendar formatting of unix milliseconds (the journal's only need for dates, so no
//! date crate).

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock now in unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
fn civil(ms: u64) -> Civil {
    let secs = ms / 1000;
    let millis = (ms % 1000) as u32;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: ((rem % 3600) / 60) as u32,
        second: (rem % 60) as u32,
        millis,
    }
}

/// `2026-11-27T03:15:00.123Z`
pub fn iso8601_ms(ms: u64) -> String {
    let c = civil(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
    )
}

/// `2026-11-27T03:15:00Z`
pub fn iso8601_s(ms: u64) -> String {
    let c = civil(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// `20261127T031500Z`, the sortable stamp that starts a run id.
pub fn compact_stamp(ms: u64) -> String {
    let c = civil(ms);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(iso8601_ms(0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (leap day of a century leap year) 12:34:56.789
        assert_eq!(iso8601_ms(951_827_696_789), "2000-02-29T12:34:56.789Z");
        // 2026-11-27T03:15:00Z
        assert_eq!(iso8601_s(1_795_749_300_000), "2026-11-27T03:15:00Z");
        assert_eq!(compact_stamp(1_795_749_300_000), "20261127T031500Z");
        // 2100-03-01 (2100 is not a leap year)
        assert_eq!(iso8601_s(4_107_542_400_000), "2100-03-01T00:00:00Z");
        // 1999-12-31T23:59:59.999Z
        assert_eq!(iso8601_ms(946_684_799_999), "1999-12-31T23:59:59.999Z");
    }

    #[test]
    fn every_day_boundary_in_a_span_is_consistent() {
        // Walk 1200 days across leap years: dates strictly increase, days stay in range.
        let mut last = String::new();
        for d in 0..1200u64 {
            let s = iso8601_s((10_950 + d) * 86_400_000);
            assert!(s > last, "{s} after {last}");
            let month: u32 = s[5..7].parse().unwrap();
            let day: u32 = s[8..10].parse().unwrap();
            assert!((1..=12).contains(&month) && (1..=31).contains(&day), "{s}");
            last = s;
        }
    }
}
