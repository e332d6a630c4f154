//! Inline SVG line charts for the report: no script, no font download, no network. Every
//! text is escaped; coordinates are finite numbers whatever the data.

use std::fmt::Write as _;

/// One line of a chart.
pub struct Series<'a> {
    pub name: &'a str,
    /// A CSS colour.
    pub color: &'a str,
    /// (time in ms, value); `None` values break the line.
    pub points: Vec<(u64, Option<f64>)>,
    /// Draw as steps (a value holds until the next point), as a traffic split does.
    pub steps: bool,
}

/// A vertical marker (a rollback, a verdict).
pub struct Marker<'a> {
    pub at_ms: u64,
    pub label: &'a str,
    pub color: &'a str,
}

const W: f64 = 370.0;
const H: f64 = 180.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 28.0;

/// Escape text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A chart of `series` over the time span `t0..t1` (ms), values formatted by `fmt` on the
/// y axis. `id` names the `<svg>` element (tests and readers find charts by it).
pub fn chart(
    id: &str,
    title: &str,
    series: &[Series<'_>],
    markers: &[Marker<'_>],
    span: (u64, u64),
    fmt: &dyn Fn(f64) -> String,
) -> String {
    let (t0, t1) = (span.0, span.1.max(span.0 + 1));
    let ymax = series
        .iter()
        .flat_map(|s| s.points.iter().filter_map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let ymax = nice_ceiling(ymax);
    let x = |t: u64| LEFT + (t.clamp(t0, t1) - t0) as f64 / (t1 - t0) as f64 * (W - LEFT - RIGHT);
    let y = |v: f64| {
        let v = if v.is_finite() {
            v.clamp(0.0, ymax)
        } else {
            0.0
        };
        TOP + (1.0 - v / ymax) * (H - TOP - BOTTOM)
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg id="{}" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}">"#,
        esc(id),
        esc(title)
    );
    let _ = write!(
        s,
        r#"<text x="{LEFT}" y="14" class="ct">{}</text>"#,
        esc(title)
    );
    // Axes and grid: 0, half, max.
    for frac in [0.0, 0.5, 1.0] {
        let v = ymax * frac;
        let yy = y(v);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" class="ax" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 4.0,
            yy + 3.0,
            esc(&fmt(v))
        );
    }
    let secs = (t1 - t0) as f64 / 1000.0;
    for frac in [0.0, 0.5, 1.0] {
        let t = t0 + ((t1 - t0) as f64 * frac) as u64;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="ax" text-anchor="middle">+{:.0} s</text>"#,
            x(t),
            H - 10.0,
            secs * frac
        );
    }
    for m in markers {
        let xx = x(m.at_ms);
        // The label on the side with room.
        let (lx, anchor) = if xx > W / 2.0 {
            (xx - 3.0, "end")
        } else {
            (xx + 3.0, "start")
        };
        let _ = write!(
            s,
            r#"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" stroke="{}" stroke-dasharray="4 3"/><text x="{lx:.1}" y="{:.1}" class="ax" text-anchor="{anchor}" fill="{}">{}</text>"#,
            H - BOTTOM,
            esc(m.color),
            TOP + 9.0,
            esc(m.color),
            esc(m.label)
        );
    }
    for (i, se) in series.iter().enumerate() {
        let mut d = String::new();
        let mut pen_down = false;
        let mut last_y = None;
        for (t, v) in &se.points {
            match v {
                Some(v) => {
                    let (xx, yy) = (x(*t), y(*v));
                    if pen_down {
                        if se.steps
                            && let Some(ly) = last_y
                        {
                            let _ = write!(d, "L{xx:.1},{ly:.1}");
                        }
                        let _ = write!(d, "L{xx:.1},{yy:.1}");
                    } else {
                        let _ = write!(d, "M{xx:.1},{yy:.1}");
                    }
                    pen_down = true;
                    last_y = Some(yy);
                }
                None => pen_down = false,
            }
        }
        if se.steps
            && let Some(ly) = last_y
        {
            let _ = write!(d, "L{:.1},{ly:.1}", x(t1));
        }
        if !d.is_empty() {
            let _ = write!(
                s,
                r#"<path d="{d}" fill="none" stroke="{}" stroke-width="2"/>"#,
                esc(se.color)
            );
        }
        // Each measured point as a dot, so a lone window still shows.
        if !se.steps {
            for (t, v) in &se.points {
                if let Some(v) = v {
                    let _ = write!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="2.2" fill="{}"/>"#,
                        x(*t),
                        y(*v),
                        esc(se.color)
                    );
                }
            }
        }
        // Legend: under the title, left to right.
        let lx = LEFT + i as f64 * 90.0;
        let _ = write!(
            s,
            r#"<rect x="{lx:.1}" y="20" width="9" height="9" fill="{}"/><text x="{:.1}" y="28" class="ax">{}</text>"#,
            esc(se.color),
            lx + 14.0,
            esc(se.name)
        );
    }
    s.push_str("</svg>");
    s
}

/// 1, 2 or 5 times a power of ten, at least `v` (and above zero).
fn nice_ceiling(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_escapes_text_and_keeps_coordinates_finite() {
        let svg = chart(
            "c<1>",
            "errors & \"latency\"",
            &[Series {
                name: "<b>",
                color: "#c00",
                points: vec![(0, Some(f64::NAN)), (500, None), (1000, Some(0.3))],
                steps: false,
            }],
            &[Marker {
                at_ms: 800,
                label: "rollback",
                color: "#c00",
            }],
            (0, 0),
            &|v| format!("{v:.1}"),
        );
        assert!(svg.starts_with("<svg id=\"c&lt;1&gt;\""), "{svg}");
        assert!(svg.contains("errors &amp; &quot;latency&quot;"));
        assert!(svg.contains("&lt;b&gt;"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert!(svg.ends_with("</svg>"));
    }

    #[test]
    fn the_y_axis_ends_on_a_round_number() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
        assert_eq!(nice_ceiling(31.0), 50.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
    }
}
