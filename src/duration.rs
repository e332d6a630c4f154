//! Durations as written in release files: an integer or decimal number with a unit
//! (`"500ms"`, `"30s"`, `"5m"`, `"1.5h"`). Shared by every part that reads user input.

use std::fmt;
use std::time::Duration;

/// Why a duration string was refused; the text is written for a person fixing a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DurationError(pub String);

const UNITS: &[(&str, f64)] = &[
    ("ms", 0.001),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
    ("d", 86_400.0),
];

/// Parse `"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"1.5h"`, `"2d"`, and compounds such as
/// `"1h30m"` or `"1m30s"` (what [`format_duration`] writes).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DurationError(
            "empty duration; write a number with a unit, e.g. \"30s\"".into(),
        ));
    }
    let mut rest = t;
    let mut secs = 0.0f64;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(split);
        if num.is_empty() {
            return Err(DurationError(format!(
                "`{text}` does not start with a number; write e.g. \"30s\""
            )));
        }
        let value: f64 = num
            .parse()
            .map_err(|_| DurationError(format!("`{num}` in `{text}` is not a number")))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let unit = unit.trim();
        if unit.is_empty() {
            return Err(DurationError(format!(
                "`{text}` has no unit; write \"{num}s\", \"{num}ms\", \"{num}m\" or \"{num}h\""
            )));
        }
        let Some((_, factor)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(DurationError(format!(
                "unknown unit `{unit}` in `{text}`; use ms, s, m, h or d"
            )));
        };
        secs += value * factor;
        rest = next;
    }
    if !secs.is_finite() || secs > 365.0 * 86_400.0 {
        return Err(DurationError(format!("`{text}` is longer than a year")));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Format a duration the way a person writes it in a release file: `1h30m`, `2m`, `45s`,
/// `250ms`. Sub-millisecond parts are dropped.
pub fn format_duration(d: Duration) -> String {
    struct F(Duration);
    impl fmt::Display for F {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let total_ms = self.0.as_millis();
            if total_ms == 0 {
                return write!(f, "0s");
            }
            if total_ms < 1000 {
                return write!(f, "{total_ms}ms");
            }
            let ms = total_ms % 1000;
            let secs = total_ms / 1000;
            let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
            if h > 0 {
                write!(f, "{h}h")?;
            }
            if m > 0 {
                write!(f, "{m}m")?;
            }
            if s > 0 || ms > 0 {
                if ms > 0 && h == 0 && m == 0 {
                    let frac = format!("{ms:03}");
                    write!(f, "{s}.{}s", frac.trim_end_matches('0'))?;
                } else {
                    write!(f, "{s}s")?;
                }
            }
            Ok(())
        }
    }
    F(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
    }

    #[test]
    fn refuses_with_a_hint() {
        assert!(parse_duration("30").unwrap_err().0.contains("\"30s\""));
        assert!(
            parse_duration("5min")
                .unwrap_err()
                .0
                .contains("unknown unit `min`")
        );
        assert!(
            parse_duration("s")
                .unwrap_err()
                .0
                .contains("does not start")
        );
        assert!(parse_duration("").is_err());
        assert!(
            parse_duration("1.2.3s")
                .unwrap_err()
                .0
                .contains("not a number")
        );
    }

    #[test]
    fn formats_round_trip() {
        for s in ["250ms", "45s", "2m", "1h30m", "1h", "1.5s", "2.25s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
