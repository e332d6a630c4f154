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

/// Parse `"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"1.5h"`, `"2d"`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DurationError(
            "empty duration; write a number with a unit, e.g. \"30s\"".into(),
        ));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    if num.is_empty() {
        return Err(DurationError(format!(
            "`{text}` does not start with a number; write e.g. \"30s\""
        )));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| DurationError(format!("`{num}` in `{text}` is not a number")))?;
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
    let secs = value * factor;
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
                    write!(f, "{s}.{:03}s", ms)?;
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
        for s in ["250ms", "45s", "2m", "1h30m", "1h", "1.500s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
