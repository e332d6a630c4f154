//! Freeze windows: a cron expression (5 fields, read in the window's IANA time zone) says
//! when a window opens, a duration how long it stays open (elapsed time: a 64 h window
//! that spans a DST change still lasts 64 h). "Is the release frozen at t" is a pure
//! function of the windows and t, so the engine asks it on its own clock and tests ask it
//! on a fixed one.
//!
//! DST, as croner resolves it in the window's zone: a cron time that falls into a
//! spring-forward gap (02:30 on the last Sunday of March in Europe/Berlin) opens the window
//! at the first real instant after the gap (03:00 CEST); a time that a fall-back repeats
//! (02:30 on the last Sunday of October) opens it once, at the first of the two.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

/// One freeze window as written (the policy file or the release's `[[freeze]]`), also
/// what the journal records at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeWindow {
    pub name: String,
    /// When the window opens: 5 cron fields in `timezone`.
    pub cron: String,
    /// How long it stays open, in milliseconds of elapsed time.
    pub duration_ms: u64,
    /// IANA time zone, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// The release `environment`s it applies to; empty = every environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    /// Tags of the release's `[[tenant]]`s: the window holds only tenants carrying one
    /// ([`tenants_frozen_at`]), never the release as a whole ([`frozen_at`]); empty = the
    /// whole release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenant_tags: Vec<String>,
}

/// Why a cron expression or a zone cannot be used.
pub fn parse_cron(text: &str) -> Result<Cron, String> {
    let fields = text.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "`{text}` has {fields} field(s); a window's cron has 5: minute hour day-of-month month day-of-week (e.g. \"0 18 * * 5\")"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| format!("`{text}` is not a cron expression: {e}"))
}

/// The IANA zone named `text`.
pub fn parse_zone(text: &str) -> Result<Tz, String> {
    Tz::from_str(text).map_err(|_| {
        format!("`{text}` is not an IANA time zone (e.g. \"Europe/Berlin\", \"UTC\", \"America/New_York\")")
    })
}

/// What is wrong with a window as written (the policy file's or the release's
/// `[[freeze]]`): each problem with the key it is about and a hint.
pub fn problems(
    cron: &str,
    timezone: &str,
    duration: std::time::Duration,
) -> Vec<(&'static str, String, &'static str)> {
    let mut out = Vec::new();
    if let Err(e) = parse_cron(cron) {
        out.push((
            "cron",
            e,
            "5 fields in the window's timezone, e.g. \"0 18 * * 5\" (Fridays 18:00)",
        ));
    }
    if let Err(e) = parse_zone(timezone) {
        out.push(("timezone", e, "an IANA name from the tz database"));
    }
    if duration.is_zero() {
        out.push((
            "duration",
            "a freeze window of no time".into(),
            "e.g. \"64h\" or \"2h30m\"",
        ));
    }
    out
}

/// A window ready to be asked: its cron and zone parsed once.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub window: FreezeWindow,
    cron: Cron,
    tz: Tz,
}

impl Compiled {
    pub fn new(window: &FreezeWindow) -> Result<Compiled, String> {
        Ok(Compiled {
            cron: parse_cron(&window.cron)?,
            tz: parse_zone(&window.timezone)?,
            window: window.clone(),
        })
    }

    /// Whether the window applies to a release in `environment`.
    pub fn applies_to(&self, environment: Option<&str>) -> bool {
        self.window.environments.is_empty()
            || environment.is_some_and(|e| self.window.environments.iter().any(|w| w == e))
    }

    /// The opening of this window that contains `t`, if any: the latest opening at or
    /// before `t` whose duration has not run out (earlier openings are looked at too, for
    /// a window longer than its cron's period).
    pub fn open_at(&self, t: DateTime<Utc>) -> Option<Active> {
        let local = t.with_timezone(&self.tz);
        let duration = chrono::Duration::milliseconds(
            i64::try_from(self.window.duration_ms).unwrap_or(i64::MAX / 2),
        );
        let mut cursor = local;
        let mut inclusive = true;
        // Openings are visited newest first; the first one still open wins, and the walk
        // stops once an opening is older than `t - duration` (it and all before it closed).
        for _ in 0..10_000 {
            let start = self
                .cron
                .find_previous_occurrence(&cursor, inclusive)
                .ok()?;
            let start_utc = start.with_timezone(&Utc);
            let end = start_utc.checked_add_signed(duration)?;
            if end > t {
                return Some(Active {
                    name: self.window.name.clone(),
                    started: start_utc,
                    ends: end,
                    timezone: self.window.timezone.clone(),
                });
            }
            if start_utc < t.checked_sub_signed(duration)? {
                return None;
            }
            cursor = start;
            inclusive = false;
        }
        None
    }
}

/// A window open at some instant: which, since when, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    pub name: String,
    pub started: DateTime<Utc>,
    pub ends: DateTime<Utc>,
    pub timezone: String,
}

impl Active {
    /// When it ends, in its zone and in UTC: `2026-12-28 10:00 CET (09:00 UTC)`.
    pub fn ends_text(&self) -> String {
        let utc = self.ends.format("%Y-%m-%d %H:%M UTC");
        match parse_zone(&self.timezone) {
            Ok(tz) => format!(
                "{} ({utc})",
                tz.from_utc_datetime(&self.ends.naive_utc())
                    .format("%Y-%m-%d %H:%M %Z")
            ),
            Err(_) => utc.to_string(),
        }
    }

    pub fn ends_ms(&self) -> u64 {
        u64::try_from(self.ends.timestamp_millis()).unwrap_or(0)
    }
}

/// The window that freezes a release in `environment` at `t`, if any: of several open,
/// the one that ends last (the release waits for all of them). Windows scoped to tenant
/// tags are not asked here: they hold tenants ([`tenants_frozen_at`]).
pub fn frozen_at(
    windows: &[Compiled],
    environment: Option<&str>,
    t: DateTime<Utc>,
) -> Option<Active> {
    windows
        .iter()
        .filter(|w| w.window.tenant_tags.is_empty() && w.applies_to(environment))
        .filter_map(|w| w.open_at(t))
        .max_by_key(|a| a.ends)
}

/// A tenant-tag window open at some instant and the tenants it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantHold {
    pub window: Active,
    /// The tenants carrying one of the window's tags, in the order given.
    pub tenants: Vec<String>,
}

impl TenantHold {
    /// `the freeze window `gold-weekend` holds tenants acme, globex (tags tier/gold) until …`.
    pub fn message(&self, tags: &[String]) -> String {
        format!(
            "the freeze window `{}` holds tenant(s) {} (tags {}) until {}",
            self.window.name,
            self.tenants.join(", "),
            tags.join(", "),
            self.window.ends_text()
        )
    }
}

/// Which of `tenants` (name, tags) the tenant-tag windows open at `t` hold, per window:
/// what the engine asks before it starts a tenant or a ring, and what a release's start
/// asks of every tenant. A window holds a tenant that carries one of its `tenant_tags`;
/// windows without tenant tags are [`frozen_at`]'s.
pub fn tenants_frozen_at(
    windows: &[Compiled],
    environment: Option<&str>,
    tenants: &[(&str, &[String])],
    t: DateTime<Utc>,
) -> Vec<TenantHold> {
    windows
        .iter()
        .filter(|w| !w.window.tenant_tags.is_empty() && w.applies_to(environment))
        .filter_map(|w| {
            let held: Vec<String> = tenants
                .iter()
                .filter(|(_, tags)| tags.iter().any(|g| w.window.tenant_tags.contains(g)))
                .map(|(name, _)| name.to_string())
                .collect();
            if held.is_empty() {
                return None;
            }
            w.open_at(t).map(|window| TenantHold {
                window,
                tenants: held,
            })
        })
        .collect()
}

/// `ms` since the epoch as a UTC instant (clamped to the epoch on overflow).
pub fn instant(ms: u64) -> DateTime<Utc> {
    i64::try_from(ms)
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(cron: &str, hours: u64) -> Compiled {
        Compiled::new(&FreezeWindow {
            name: "w".into(),
            cron: cron.into(),
            duration_ms: hours * 3_600_000,
            timezone: "Europe/Berlin".into(),
            environments: vec!["production".into()],
            tenant_tags: vec![],
        })
        .unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_weekly_window_opens_in_its_zone_and_lasts_its_duration() {
        // Fridays 18:00 Berlin for 64 h; Friday 2026-12-04 18:00 CET is 17:00 UTC.
        let w = window("0 18 * * 5", 64);
        assert_eq!(w.open_at(utc("2026-12-04T16:59:59Z")), None);
        let a = w.open_at(utc("2026-12-04T17:00:00Z")).unwrap();
        assert_eq!(a.started, utc("2026-12-04T17:00:00Z"));
        assert_eq!(a.ends, utc("2026-12-07T09:00:00Z"));
        assert_eq!(a.ends_text(), "2026-12-07 10:00 CET (2026-12-07 09:00 UTC)");
        assert!(w.open_at(utc("2026-12-07T08:59:59Z")).is_some());
        assert_eq!(w.open_at(utc("2026-12-07T09:00:00Z")), None);
    }

    #[test]
    fn the_environment_scopes_a_window() {
        let w = [window("0 18 * * 5", 64)];
        let t = utc("2026-12-05T12:00:00Z");
        assert!(frozen_at(&w, Some("production"), t).is_some());
        assert_eq!(frozen_at(&w, Some("staging"), t), None);
        assert_eq!(frozen_at(&w, None, t), None);
    }

    #[test]
    fn spring_forward_a_time_in_the_gap_opens_at_the_first_instant_after_it() {
        // 2026-03-29: Berlin goes from 02:00 CET to 03:00 CEST (01:00 UTC). 02:30 does not
        // exist that day; the window opens at 03:00 CEST = 01:00 UTC and lasts 2 h.
        let w = window("30 2 * * *", 2);
        let a = w.open_at(utc("2026-03-29T01:00:00Z")).unwrap();
        assert_eq!(a.started, utc("2026-03-29T01:00:00Z"));
        assert_eq!(a.ends, utc("2026-03-29T03:00:00Z"));
        assert_eq!(w.open_at(utc("2026-03-29T00:59:00Z")), None);
        // The day before and after, 02:30 local is 01:30 UTC (CET) and 00:30 UTC (CEST).
        assert_eq!(
            w.open_at(utc("2026-03-28T01:30:00Z")).unwrap().started,
            utc("2026-03-28T01:30:00Z")
        );
        assert_eq!(
            w.open_at(utc("2026-03-30T00:30:00Z")).unwrap().started,
            utc("2026-03-30T00:30:00Z")
        );
        assert_eq!(w.open_at(utc("2026-03-30T00:29:00Z")), None);
    }

    #[test]
    fn fall_back_a_repeated_time_opens_once_and_the_duration_is_elapsed_time() {
        // 2026-10-25: Berlin goes from 03:00 CEST back to 02:00 CET (01:00 UTC). 02:30
        // happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET); the window opens at the
        // first and a 1 h window is over at 01:30 UTC, when the wall clock says 02:30 again.
        let w = window("30 2 * * *", 1);
        let a = w.open_at(utc("2026-10-25T00:30:00Z")).unwrap();
        assert_eq!(a.ends, utc("2026-10-25T01:30:00Z"));
        assert_eq!(w.open_at(utc("2026-10-25T01:30:00Z")), None);
        assert_eq!(w.open_at(utc("2026-10-25T02:00:00Z")), None);
        assert_eq!(a.ends_text(), "2026-10-25 02:30 CET (2026-10-25 01:30 UTC)");
        // A 64 h weekend window across the change keeps 64 h of elapsed time.
        let weekend = window("0 18 * * 5", 64);
        let a = weekend.open_at(utc("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(a.started, utc("2026-10-23T16:00:00Z"));
        assert_eq!(a.ends, utc("2026-10-26T08:00:00Z"));
        assert_eq!(a.ends_text(), "2026-10-26 09:00 CET (2026-10-26 08:00 UTC)");
    }

    #[test]
    fn a_window_longer_than_its_period_is_open_from_an_earlier_opening() {
        // Every day at 00:00 UTC for 36 h: at 10:00 on day 2, both openings are open.
        let w = Compiled::new(&FreezeWindow {
            name: "long".into(),
            cron: "0 0 * * *".into(),
            duration_ms: 36 * 3_600_000,
            timezone: "UTC".into(),
            environments: vec![],
            tenant_tags: vec![],
        })
        .unwrap();
        let a = w.open_at(utc("2026-01-02T10:00:00Z")).unwrap();
        assert_eq!(a.started, utc("2026-01-02T00:00:00Z"));
        assert!(frozen_at(&[w], Some("any"), utc("2026-01-02T10:00:00Z")).is_some());
    }

    #[test]
    fn bad_cron_and_zones_say_what_is_expected() {
        assert!(
            parse_cron("0 18 * *")
                .unwrap_err()
                .contains("has 4 field(s)")
        );
        assert!(
            parse_cron("0 0 18 * * 5")
                .unwrap_err()
                .contains("has 6 field(s)")
        );
        assert!(
            parse_cron("0 25 * * 5")
                .unwrap_err()
                .contains("is not a cron expression")
        );
        assert!(parse_zone("Europe/Berlim").unwrap_err().contains("IANA"));
    }

    #[test]
    fn a_tenant_tag_window_holds_only_the_tenants_with_its_tags() {
        let mut w = FreezeWindow {
            name: "gold-weekend".into(),
            cron: "0 18 * * 5".into(),
            duration_ms: 64 * 3_600_000,
            timezone: "Europe/Berlin".into(),
            environments: vec!["production".into()],
            tenant_tags: vec!["tier/gold".into()],
        };
        let gold = ["tier/gold".to_string(), "region/eu".to_string()];
        let free = ["tier/free".to_string()];
        let tenants: [(&str, &[String]); 3] =
            [("acme", &gold), ("initech", &free), ("globex", &gold)];
        let c = [Compiled::new(&w).unwrap()];
        let sat = utc("2026-12-05T12:00:00Z");
        let held = tenants_frozen_at(&c, Some("production"), &tenants, sat);
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].tenants, ["acme", "globex"]);
        assert_eq!(
            held[0].message(&w.tenant_tags),
            "the freeze window `gold-weekend` holds tenant(s) acme, globex (tags tier/gold) until 2026-12-07 10:00 CET (2026-12-07 09:00 UTC)"
        );
        // Not the release as a whole; not another environment; not after it closed;
        // not a release whose tenants lack the tag.
        assert_eq!(frozen_at(&c, Some("production"), sat), None);
        assert!(tenants_frozen_at(&c, Some("staging"), &tenants, sat).is_empty());
        assert!(
            tenants_frozen_at(
                &c,
                Some("production"),
                &tenants,
                utc("2026-12-07T09:00:00Z")
            )
            .is_empty()
        );
        assert!(tenants_frozen_at(&c, Some("production"), &tenants[1..2], sat).is_empty());
        // Without tenant tags the window is the release's, and holds no tenant by tag.
        w.tenant_tags.clear();
        let c = [Compiled::new(&w).unwrap()];
        assert!(frozen_at(&c, Some("production"), sat).is_some());
        assert!(tenants_frozen_at(&c, Some("production"), &tenants, sat).is_empty());
    }
}
