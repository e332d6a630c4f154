//! Themes: `themes/*.toml` files that give a style to each semantic slot
//! (`health.ok`, `step.active`, ...). Widgets ask for slots, never for colours, and
//! every status is also written as a glyph and a word, so the mono theme (and a
//! colour-blind reader) loses nothing.
//!
//! File format:
//! ```toml
//! name = "dark"
//! inherits = "mono"            # optional: start from another theme
//! [palette]                    # optional: name colours once
//! green = "#98c379"
//! [styles]
//! "health.ok" = { fg = "green", modifiers = ["bold"] }
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use ratatui::style::{Color, Modifier, Style};

use super::config::ConfigError;

macro_rules! slots {
    ($($variant:ident = $name:literal : $doc:literal,)*) => {
        /// A semantic style slot.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Slot { $($variant,)* }
        impl Slot {
            pub const ALL: &'static [Slot] = &[$(Slot::$variant,)*];
            pub fn name(self) -> &'static str { match self { $(Slot::$variant => $name,)* } }
            pub fn description(self) -> &'static str { match self { $(Slot::$variant => $doc,)* } }
            pub fn from_name(s: &str) -> Option<Slot> { match s { $($name => Some(Slot::$variant),)* _ => None } }
        }
    };
}

slots! {
    Base = "base": "text and background of every pane",
    Border = "border": "pane borders",
    BorderFocused = "border.focused": "the focused pane's border",
    Title = "title": "pane titles",
    Dim = "dim": "secondary text (hints, axes, placeholders)",
    Selection = "selection": "the selected row",
    HealthOk = "health.ok": "promoted, healthy, passing",
    HealthDegraded = "health.degraded": "paused, waiting, inconclusive",
    HealthDown = "health.down": "failed, rolled back, failing",
    HealthUnknown = "health.unknown": "pending, skipped, no data",
    StatusActive = "status.active": "starting, progressing, analysing",
    StatusRollingBack = "status.rolling_back": "rolling back",
    StepDone = "step.done": "timeline: steps done",
    StepActive = "step.active": "timeline: the current step",
    StepPending = "step.pending": "timeline: steps to come",
    StepGate = "step.gate": "timeline: gates (approval, pause, analysis end)",
    Countdown = "countdown": "gate and step countdowns",
    ChartBaseline = "chart.baseline": "baseline series in the health charts",
    ChartCanary = "chart.canary": "candidate series in the health charts",
    ChartAxis = "chart.axis": "chart axes and labels",
    VerdictPass = "verdict.pass": "judge: PASS",
    VerdictFail = "verdict.fail": "judge: FAIL and its failing metric lines",
    VerdictInconclusive = "verdict.inconclusive": "judge: INCONCLUSIVE",
    Database = "database": "migration (database) nodes in the tree",
    LogError = "log.error": "log lines at error level",
    LogWarn = "log.warn": "log lines at warn level",
    LogInfo = "log.info": "log lines at info level",
    LogDebug = "log.debug": "log lines at debug and trace level",
    StatusBar = "statusbar": "the top status bar",
    EnvBanner = "env.banner": "the environment banner (non-production)",
    EnvBannerProduction = "env.banner.production": "the environment banner in production",
    HintKey = "hint.key": "keys in the hint line",
    HintText = "hint.text": "descriptions in the hint line",
    ToastInfo = "toast.info": "messages: done",
    ToastError = "toast.error": "messages: refused, errors, config problems",
    Dialog = "dialog": "dialogs, help and palette",
    DialogDanger = "dialog.danger": "the confirmation line of dangerous actions",
}

/// Styles per slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    pub styles: BTreeMap<Slot, Style>,
}

/// The shipped themes, embedded.
pub const SHIPPED: &[(&str, &str)] = &[
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
    ("mono", include_str!("../../themes/mono.toml")),
];

/// One theme file, parsed.
#[derive(Debug, Clone)]
pub struct ThemeFile {
    pub name: String,
    pub inherits: Option<String>,
    pub styles: BTreeMap<Slot, Style>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn find_line(text: &str, needle: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.trim_start().starts_with(needle))
        .map(|i| i + 1)
}

fn parse_modifier(s: &str) -> Option<Modifier> {
    Some(match s {
        "bold" => Modifier::BOLD,
        "dim" => Modifier::DIM,
        "italic" => Modifier::ITALIC,
        "underlined" | "underline" => Modifier::UNDERLINED,
        "reversed" | "reverse" => Modifier::REVERSED,
        "crossed_out" => Modifier::CROSSED_OUT,
        "slow_blink" => Modifier::SLOW_BLINK,
        _ => return None,
    })
}

impl ThemeFile {
    pub fn parse(path: &Path, text: &str) -> Result<ThemeFile, Vec<ConfigError>> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            vec![ConfigError::new(
                path,
                e.span().map(|s| line_of(text, s.start)),
                format!("not valid TOML: {}", e.message()),
            )]
        })?;
        let mut errors = Vec::new();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = table
            .get("name")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or(stem);
        let inherits = table
            .get("inherits")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let mut palette: BTreeMap<String, Color> = BTreeMap::new();
        for k in table.keys() {
            if !matches!(k.as_str(), "name" | "inherits" | "palette" | "styles") {
                errors.push(ConfigError::new(
                    path,
                    find_line(text, k).or_else(|| find_line(text, &format!("[{k}]"))),
                    format!(
                        "unknown key `{k}`; a theme has name, inherits, [palette] and [styles]"
                    ),
                ));
            }
        }
        if let Some(p) = table.get("palette").and_then(|v| v.as_table()) {
            for (k, v) in p {
                let line = find_line(text, k).or_else(|| find_line(text, &format!("\"{k}\"")));
                match v.as_str().map(Color::from_str) {
                    Some(Ok(c)) => {
                        palette.insert(k.clone(), c);
                    }
                    _ => errors.push(ConfigError::new(
                        path,
                        line,
                        format!("palette colour `{k}` must be a colour name, \"#rrggbb\" or a 0-255 index"),
                    )),
                }
            }
        }
        let mut styles = BTreeMap::new();
        if let Some(st) = table.get("styles").and_then(|v| v.as_table()) {
            for (k, v) in st {
                let line = find_line(text, &format!("\"{k}\"")).or_else(|| find_line(text, k));
                let Some(slot) = Slot::from_name(k) else {
                    errors.push(ConfigError::new(
                        path,
                        line,
                        format!("unknown slot `{k}`; `cutover print theme-slots` lists them"),
                    ));
                    continue;
                };
                let Some(t) = v.as_table() else {
                    errors.push(ConfigError::new(
                        path,
                        line,
                        format!("`{k}` must be an inline table like {{ fg = \"green\", modifiers = [\"bold\"] }}"),
                    ));
                    continue;
                };
                let mut style = Style::default();
                for (field, fv) in t {
                    match field.as_str() {
                        "fg" | "bg" => {
                            let c = fv.as_str().and_then(|s| {
                                palette.get(s).copied().or_else(|| Color::from_str(s).ok())
                            });
                            match c {
                                Some(c) if field == "fg" => style = style.fg(c),
                                Some(c) => style = style.bg(c),
                                None => errors.push(ConfigError::new(
                                    path,
                                    line,
                                    format!(
                                        "`{k}`: {field} {} is neither a palette name nor a colour (name, \"#rrggbb\", 0-255)",
                                        fv
                                    ),
                                )),
                            }
                        }
                        "modifiers" => {
                            for m in fv.as_array().into_iter().flatten() {
                                match m.as_str().and_then(parse_modifier) {
                                    Some(m) => style = style.add_modifier(m),
                                    None => errors.push(ConfigError::new(
                                        path,
                                        line,
                                        format!("`{k}`: unknown modifier {m}; use bold, dim, italic, underlined, reversed, crossed_out"),
                                    )),
                                }
                            }
                        }
                        other => errors.push(ConfigError::new(
                            path,
                            line,
                            format!("`{k}`: unknown field `{other}`; use fg, bg, modifiers"),
                        )),
                    }
                }
                styles.insert(slot, style);
            }
        }
        errors.sort_by_key(|e| e.line);
        if errors.is_empty() {
            Ok(ThemeFile {
                name,
                inherits,
                styles,
            })
        } else {
            Err(errors)
        }
    }
}

impl Theme {
    /// Resolve `name` among `files` (user files shadow shipped ones by name), following
    /// `inherits`; a slot a theme leaves out takes the `base` slot's style.
    pub fn resolve(name: &str, files: &BTreeMap<String, ThemeFile>) -> Result<Theme, String> {
        let mut chain = Vec::new();
        let mut cur = Some(name.to_string());
        while let Some(n) = cur {
            if chain.len() > 8 || chain.contains(&n) {
                return Err(format!(
                    "theme `{name}`: `inherits` goes round in a circle at `{n}`"
                ));
            }
            let f = files.get(&n).ok_or_else(|| {
                format!(
                    "no theme named `{n}`; known: {}",
                    files.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?;
            cur = f.inherits.clone();
            chain.push(n);
        }
        let mut styles = BTreeMap::new();
        for n in chain.iter().rev() {
            if let Some(f) = files.get(n) {
                styles.extend(f.styles.iter().map(|(k, v)| (*k, *v)));
            }
        }
        let base = styles.get(&Slot::Base).copied().unwrap_or_default();
        for s in Slot::ALL {
            styles.entry(*s).or_insert(base);
        }
        Ok(Theme {
            name: name.to_string(),
            styles,
        })
    }

    /// A shipped theme by name.
    pub fn shipped(name: &str) -> Result<Theme, String> {
        let files = shipped_files().map_err(|e| {
            e.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        Theme::resolve(name, &files)
    }

    pub fn get(&self, slot: Slot) -> Style {
        self.styles.get(&slot).copied().unwrap_or_default()
    }

    /// True when the theme uses no colour at all.
    pub fn is_mono(&self) -> bool {
        self.styles.values().all(|s| {
            s.fg.is_none_or(|c| c == Color::Reset) && s.bg.is_none_or(|c| c == Color::Reset)
        })
    }
}

/// The shipped theme files, parsed.
pub fn shipped_files() -> Result<BTreeMap<String, ThemeFile>, Vec<ConfigError>> {
    let mut out = BTreeMap::new();
    for (n, text) in SHIPPED {
        let f = ThemeFile::parse(Path::new(&format!("themes/{n}.toml")), text)?;
        out.insert(f.name.clone(), f);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_themes_parse_and_fill_every_slot() {
        let files = shipped_files().unwrap();
        for (n, _) in SHIPPED {
            let t = Theme::resolve(n, &files).unwrap();
            assert_eq!(t.styles.len(), Slot::ALL.len());
            // Every shipped theme sets every slot itself (no silent fallbacks).
            let f = &files[*n];
            for s in Slot::ALL {
                assert!(
                    f.styles.contains_key(s) || f.inherits.is_some(),
                    "{n}: slot {} not set",
                    s.name()
                );
            }
        }
        assert!(Theme::shipped("mono").unwrap().is_mono());
        assert!(!Theme::shipped("dark").unwrap().is_mono());
        let mono = Theme::shipped("mono").unwrap();
        assert!(
            mono.get(Slot::Selection)
                .add_modifier
                .contains(Modifier::REVERSED)
        );
    }

    #[test]
    fn bad_theme_names_line_and_fix() {
        let text = "name = \"x\"\n[palette]\ngreen = \"#00ff00\"\n[styles]\n\"health.ok\" = { fg = \"green\" }\n\"health.great\" = { fg = \"green\" }\n\"health.down\" = { fg = \"reddish\" }\n\"dim\" = { modifiers = [\"sparkly\"] }\n";
        let errs = ThemeFile::parse(Path::new("themes/x.toml"), text).unwrap_err();
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("themes/x.toml:6: unknown slot `health.great`")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("themes/x.toml:7: `health.down`: fg")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("themes/x.toml:8: `dim`: unknown modifier")),
            "{msgs:?}"
        );
    }

    #[test]
    fn inheritance_and_cycles() {
        let mut files = shipped_files().unwrap();
        let mine = ThemeFile::parse(
            Path::new("mine.toml"),
            "inherits = \"dark\"\n[styles]\n\"health.ok\" = { fg = \"blue\" }\n",
        )
        .unwrap();
        files.insert("mine".into(), mine);
        let t = Theme::resolve("mine", &files).unwrap();
        assert_eq!(t.get(Slot::HealthOk).fg, Some(Color::Blue));
        assert_eq!(
            t.get(Slot::HealthDown),
            Theme::shipped("dark").unwrap().get(Slot::HealthDown)
        );
        let a = ThemeFile::parse(Path::new("a.toml"), "inherits = \"b\"\n").unwrap();
        let b = ThemeFile::parse(Path::new("b.toml"), "inherits = \"a\"\n").unwrap();
        files.insert("a".into(), a);
        files.insert("b".into(), b);
        assert!(Theme::resolve("a", &files).unwrap_err().contains("circle"));
    }
}
