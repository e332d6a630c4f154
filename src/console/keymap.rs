//! Key bindings: `keymaps/*.toml` files mapping key strings to action names, per
//! context (`global`, `tree`, `health`, `timeline`, `log`). The shipped default is
//! embedded; a `base` keymap (e.g. `vim`) and the user's `keymap.toml` are laid over it
//! per key. `"none"` unbinds a key.
//!
//! Key strings: a single character (`r`, `R`, `?`), or `<...>` with optional modifiers:
//! `<C-c>`, `<A-x>`, `<S-Tab>`, `<Enter>`, `<Esc>`, `<Tab>`, `<BackTab>`, `<Space>`,
//! `<Up>`, `<Down>`, `<Left>`, `<Right>`, `<PageUp>`, `<PageDown>`, `<Home>`, `<End>`,
//! `<F1>`..`<F12>`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::action::Action;
use super::config::ConfigError;

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Context {
    Global,
    Tree,
    Health,
    Timeline,
    Log,
}

impl Context {
    pub const ALL: [Context; 5] = [
        Context::Global,
        Context::Tree,
        Context::Health,
        Context::Timeline,
        Context::Log,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Context::Global => "global",
            Context::Tree => "tree",
            Context::Health => "health",
            Context::Timeline => "timeline",
            Context::Log => "log",
        }
    }
    fn from_name(s: &str) -> Option<Context> {
        Context::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// A key with its modifiers, normalised (shifted letters are upper-case without SHIFT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub code: KeyCodeOrd,
    pub ctrl: bool,
    pub alt: bool,
    pub shift: bool,
}

/// `KeyCode` subset with an order (for sorted listings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyCodeOrd {
    Char(char),
    F(u8),
    Enter,
    Esc,
    Tab,
    BackTab,
    Backspace,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Home,
    End,
    Delete,
    Insert,
}

impl Key {
    pub fn from_event(ev: &KeyEvent) -> Option<Key> {
        let code = match ev.code {
            KeyCode::Char(c) => KeyCodeOrd::Char(c),
            KeyCode::F(n) => KeyCodeOrd::F(n),
            KeyCode::Enter => KeyCodeOrd::Enter,
            KeyCode::Esc => KeyCodeOrd::Esc,
            KeyCode::Tab => KeyCodeOrd::Tab,
            KeyCode::BackTab => KeyCodeOrd::BackTab,
            KeyCode::Backspace => KeyCodeOrd::Backspace,
            KeyCode::Up => KeyCodeOrd::Up,
            KeyCode::Down => KeyCodeOrd::Down,
            KeyCode::Left => KeyCodeOrd::Left,
            KeyCode::Right => KeyCodeOrd::Right,
            KeyCode::PageUp => KeyCodeOrd::PageUp,
            KeyCode::PageDown => KeyCodeOrd::PageDown,
            KeyCode::Home => KeyCodeOrd::Home,
            KeyCode::End => KeyCodeOrd::End,
            KeyCode::Delete => KeyCodeOrd::Delete,
            KeyCode::Insert => KeyCodeOrd::Insert,
            _ => return None,
        };
        Some(Key::normalise(
            code,
            ev.modifiers.contains(KeyModifiers::CONTROL),
            ev.modifiers.contains(KeyModifiers::ALT),
            ev.modifiers.contains(KeyModifiers::SHIFT),
        ))
    }

    fn normalise(code: KeyCodeOrd, ctrl: bool, alt: bool, shift: bool) -> Key {
        match code {
            // A character already carries its shift (`R`, `?`).
            KeyCodeOrd::Char(c) => Key {
                code: KeyCodeOrd::Char(if shift && c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else if ctrl && c.is_ascii_uppercase() {
                    c.to_ascii_lowercase()
                } else {
                    c
                }),
                ctrl,
                alt,
                shift: false,
            },
            KeyCodeOrd::BackTab => Key {
                code,
                ctrl,
                alt,
                shift: false,
            },
            KeyCodeOrd::Tab if shift => Key {
                code: KeyCodeOrd::BackTab,
                ctrl,
                alt,
                shift: false,
            },
            _ => Key {
                code,
                ctrl,
                alt,
                shift,
            },
        }
    }

    /// Parse a key string from a keymap file.
    pub fn parse(s: &str) -> Result<Key, String> {
        let mut chars = s.chars();
        if let (Some(c), None) = (chars.next(), chars.next()) {
            return Ok(Key::normalise(KeyCodeOrd::Char(c), false, false, false));
        }
        let inner = s
            .strip_prefix('<')
            .and_then(|r| r.strip_suffix('>'))
            .ok_or_else(|| {
                format!("`{s}` is not a key: write one character (`r`) or a name in angle brackets (`<C-r>`, `<Enter>`)")
            })?;
        let mut parts: Vec<&str> = inner.split('-').collect();
        // `<C-->`: the key itself is `-`.
        if inner.ends_with("--") {
            parts.pop();
            if let Some(last) = parts.last_mut() {
                *last = "-";
            }
        }
        let name = parts.pop().unwrap_or_default();
        let (mut ctrl, mut alt, mut shift) = (false, false, false);
        for m in parts {
            match m {
                "C" | "c" | "Ctrl" => ctrl = true,
                "A" | "a" | "M" | "Alt" => alt = true,
                "S" | "s" | "Shift" => shift = true,
                other => {
                    return Err(format!(
                        "`{s}`: unknown modifier `{other}`; use C (ctrl), A (alt) or S (shift)"
                    ));
                }
            }
        }
        let code = match name.to_ascii_lowercase().as_str() {
            "enter" | "cr" | "return" => KeyCodeOrd::Enter,
            "esc" | "escape" => KeyCodeOrd::Esc,
            "tab" => KeyCodeOrd::Tab,
            "backtab" => KeyCodeOrd::BackTab,
            "bs" | "backspace" => KeyCodeOrd::Backspace,
            "space" => KeyCodeOrd::Char(' '),
            "up" => KeyCodeOrd::Up,
            "down" => KeyCodeOrd::Down,
            "left" => KeyCodeOrd::Left,
            "right" => KeyCodeOrd::Right,
            "pageup" | "pgup" => KeyCodeOrd::PageUp,
            "pagedown" | "pgdn" => KeyCodeOrd::PageDown,
            "home" => KeyCodeOrd::Home,
            "end" => KeyCodeOrd::End,
            "del" | "delete" => KeyCodeOrd::Delete,
            "ins" | "insert" => KeyCodeOrd::Insert,
            "lt" => KeyCodeOrd::Char('<'),
            "gt" => KeyCodeOrd::Char('>'),
            f if f.len() >= 2
                && f.starts_with('f')
                && f[1..].parse::<u8>().is_ok_and(|n| (1..=12).contains(&n)) =>
            {
                KeyCodeOrd::F(f[1..].parse::<u8>().unwrap_or(1))
            }
            _ => {
                let mut cs = name.chars();
                match (cs.next(), cs.next()) {
                    (Some(c), None) => KeyCodeOrd::Char(c),
                    _ => {
                        return Err(format!(
                            "`{s}`: unknown key name `{name}`; e.g. <Enter>, <Esc>, <Tab>, <Space>, <Up>, <F1>, <C-r>"
                        ));
                    }
                }
            }
        };
        Ok(Key::normalise(code, ctrl, alt, shift))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let named = |n: &str| -> String { n.to_string() };
        let base = match self.code {
            KeyCodeOrd::Char(' ') => named("Space"),
            KeyCodeOrd::Char('<') => named("lt"),
            KeyCodeOrd::Char('>') => named("gt"),
            KeyCodeOrd::Char(c) => c.to_string(),
            KeyCodeOrd::F(n) => format!("F{n}"),
            KeyCodeOrd::Enter => named("Enter"),
            KeyCodeOrd::Esc => named("Esc"),
            KeyCodeOrd::Tab => named("Tab"),
            KeyCodeOrd::BackTab => named("BackTab"),
            KeyCodeOrd::Backspace => named("BS"),
            KeyCodeOrd::Up => named("Up"),
            KeyCodeOrd::Down => named("Down"),
            KeyCodeOrd::Left => named("Left"),
            KeyCodeOrd::Right => named("Right"),
            KeyCodeOrd::PageUp => named("PageUp"),
            KeyCodeOrd::PageDown => named("PageDown"),
            KeyCodeOrd::Home => named("Home"),
            KeyCodeOrd::End => named("End"),
            KeyCodeOrd::Delete => named("Del"),
            KeyCodeOrd::Insert => named("Ins"),
        };
        let plain_char =
            matches!(self.code, KeyCodeOrd::Char(c) if c != ' ' && c != '<' && c != '>');
        if plain_char && !self.ctrl && !self.alt && !self.shift {
            return f.write_str(&base);
        }
        f.write_str("<")?;
        if self.ctrl {
            f.write_str("C-")?;
        }
        if self.alt {
            f.write_str("A-")?;
        }
        if self.shift {
            f.write_str("S-")?;
        }
        write!(f, "{base}>")
    }
}

/// The keys in force: context → key → action.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Keymap {
    pub bindings: BTreeMap<Context, BTreeMap<Key, Action>>,
}

/// The shipped keymaps, embedded so the binary works without its source tree.
pub const SHIPPED: &[(&str, &str)] = &[
    ("default", include_str!("../../keymaps/default.toml")),
    ("vim", include_str!("../../keymaps/vim.toml")),
];

/// One keymap file, parsed but not yet laid over anything.
#[derive(Debug, Clone, Default)]
pub struct KeymapLayer {
    /// `base = "vim"`: a shipped keymap to start from (before this file).
    pub base: Option<String>,
    /// (context, key, action or None for unbind)
    pub entries: Vec<(Context, Key, Option<Action>)>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl KeymapLayer {
    /// Parse one keymap file; errors carry `file:line`.
    pub fn parse(path: &Path, text: &str) -> Result<KeymapLayer, Vec<ConfigError>> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            vec![ConfigError::new(
                path,
                e.span().map(|s| line_of(text, s.start)),
                format!("not valid TOML: {}", e.message()),
            )]
        })?;
        let mut layer = KeymapLayer::default();
        let mut errors = Vec::new();
        for (section, value) in &table {
            let line = text
                .lines()
                .position(|l| {
                    let t = l.trim();
                    t == format!("[{section}]")
                        || t.starts_with(&format!("{section} "))
                        || t.starts_with(&format!("{section}="))
                })
                .map(|i| i + 1);
            if section == "base" {
                match value.as_str() {
                    Some(b) if SHIPPED.iter().any(|(n, _)| *n == b) => {
                        layer.base = Some(b.to_string())
                    }
                    _ => errors.push(ConfigError::new(
                        path,
                        line,
                        format!(
                            "`base` must name a shipped keymap: {}",
                            SHIPPED
                                .iter()
                                .map(|(n, _)| *n)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )),
                }
                continue;
            }
            let Some(ctx) = Context::from_name(section) else {
                errors.push(ConfigError::new(
                    path,
                    line,
                    format!(
                        "unknown section `[{section}]`; sections are {} (and `base = \"vim\"`)",
                        Context::ALL.map(|c| c.name()).join(", ")
                    ),
                ));
                continue;
            };
            let Some(keys) = value.as_table() else {
                errors.push(ConfigError::new(
                    path,
                    line,
                    format!("`{section}` must be a table of \"key\" = \"action\""),
                ));
                continue;
            };
            let section_text = section_lines(text, section);
            let mut seen: BTreeMap<Key, String> = BTreeMap::new();
            // In file order, so a duplicate is reported at its second occurrence.
            let mut ordered: Vec<(Option<usize>, &String, &toml::Value)> = keys
                .iter()
                .map(|(k, v)| {
                    let l = section_text
                        .iter()
                        .find(|(_, l)| key_on_line(l, k))
                        .map(|(n, _)| *n)
                        .or(line);
                    (l, k, v)
                })
                .collect();
            ordered.sort_by_key(|(l, _, _)| *l);
            for (line, k, v) in ordered {
                let key = match Key::parse(k) {
                    Ok(key) => key,
                    Err(e) => {
                        errors.push(ConfigError::new(path, line, e));
                        continue;
                    }
                };
                if let Some(prev) = seen.insert(key, k.clone()) {
                    errors.push(ConfigError::new(
                        path,
                        line,
                        format!("`{k}` is the same key as `{prev}` in [{section}]; keep one"),
                    ));
                    continue;
                }
                let Some(name) = v.as_str() else {
                    errors.push(ConfigError::new(
                        path,
                        line,
                        format!("`{k}` must map to an action name in quotes, e.g. \"rollback\""),
                    ));
                    continue;
                };
                if name == "none" {
                    layer.entries.push((ctx, key, None));
                    continue;
                }
                match Action::from_name(name) {
                    Some(a) => layer.entries.push((ctx, key, Some(a))),
                    None => errors.push(ConfigError::new(
                        path,
                        line,
                        format!(
                            "unknown action `{name}`; `cutover print keymap` lists them (or \"none\" to unbind)"
                        ),
                    )),
                }
            }
        }
        if errors.is_empty() {
            Ok(layer)
        } else {
            errors.sort_by_key(|e| e.line);
            Err(errors)
        }
    }
}

/// Lines (1-based number, text) of the `[section]` table in a TOML file.
fn section_lines<'a>(text: &'a str, section: &str) -> Vec<(usize, &'a str)> {
    let header = format!("[{section}]");
    let mut inside = false;
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            inside = t == header;
            continue;
        }
        if inside {
            out.push((i + 1, l));
        }
    }
    out
}

fn key_on_line(line: &str, key: &str) -> bool {
    let t = line.trim_start();
    t.starts_with(&format!("\"{key}\"")) || t.starts_with(&format!("'{key}'"))
}

impl Keymap {
    /// Lay `layer` over this keymap, key by key.
    pub fn apply(&mut self, layer: &KeymapLayer) {
        for (ctx, key, action) in &layer.entries {
            let m = self.bindings.entry(*ctx).or_default();
            match action {
                Some(a) => {
                    m.insert(*key, *a);
                }
                None => {
                    m.remove(key);
                }
            }
        }
    }

    /// A shipped keymap (the default under it for `vim`).
    pub fn shipped(name: &str) -> Result<Keymap, Vec<ConfigError>> {
        let mut km = Keymap::default();
        for (n, text) in SHIPPED {
            if *n == "default" || *n == name {
                let layer = KeymapLayer::parse(Path::new(&format!("keymaps/{n}.toml")), text)?;
                km.apply(&layer);
            }
        }
        Ok(km)
    }

    /// What `key` does with `focus` focused: the pane's binding first, then global.
    pub fn resolve(&self, focus: Context, key: &Key) -> Option<Action> {
        self.bindings
            .get(&focus)
            .and_then(|m| m.get(key))
            .or_else(|| self.bindings.get(&Context::Global).and_then(|m| m.get(key)))
            .copied()
    }

    /// The keys bound to `action` (pane first, then global), for hints.
    pub fn keys_for(&self, focus: Context, action: Action) -> Vec<Key> {
        let mut out = Vec::new();
        for ctx in [focus, Context::Global] {
            if let Some(m) = self.bindings.get(&ctx) {
                for (k, a) in m {
                    if *a == action && !out.contains(k) && self.resolve(focus, k) == Some(action) {
                        out.push(*k);
                    }
                }
            }
            if focus == Context::Global {
                break;
            }
        }
        out
    }

    /// The first key for `action` in any context, for the palette and help.
    pub fn any_key_for(&self, action: Action) -> Option<(Context, Key)> {
        Context::ALL.into_iter().find_map(|c| {
            self.bindings
                .get(&c)
                .and_then(|m| m.iter().find(|(_, a)| **a == action).map(|(k, _)| (c, *k)))
        })
    }

    /// The file form of this keymap (`cutover print keymap`).
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for ctx in Context::ALL {
            let Some(m) = self.bindings.get(&ctx) else {
                continue;
            };
            if m.is_empty() {
                continue;
            }
            out.push_str(&format!("[{}]\n", ctx.name()));
            for (k, a) in m {
                let ks = k.to_string().replace('\\', "\\\\").replace('"', "\\\"");
                out.push_str(&format!(
                    "{:<14} = {:<20} # {}\n",
                    format!("\"{ks}\""),
                    format!("\"{}\"", a.name()),
                    a.info().description
                ));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_strings_parse_and_print_back() {
        for s in [
            "r",
            "R",
            "?",
            ":",
            "<C-c>",
            "<Enter>",
            "<Esc>",
            "<Tab>",
            "<BackTab>",
            "<Space>",
            "<Up>",
            "<PageDown>",
            "<F1>",
            "<A-x>",
            "<C-z>",
            "/",
        ] {
            let k = Key::parse(s).unwrap();
            assert_eq!(k.to_string(), s, "{s}");
        }
        assert_eq!(
            Key::parse("<S-Tab>").unwrap(),
            Key::parse("<BackTab>").unwrap()
        );
        assert_eq!(Key::parse("<S-r>").unwrap(), Key::parse("R").unwrap());
        assert_eq!(Key::parse("<C-R>").unwrap(), Key::parse("<C-r>").unwrap());
        assert!(
            Key::parse("<Hyper-x>")
                .unwrap_err()
                .contains("unknown modifier")
        );
        assert!(
            Key::parse("<Foo>")
                .unwrap_err()
                .contains("unknown key name")
        );
        assert!(Key::parse("rr").unwrap_err().contains("not a key"));
    }

    #[test]
    fn events_normalise_like_files() {
        let ev = KeyEvent::new(KeyCode::Char('R'), KeyModifiers::SHIFT);
        assert_eq!(Key::from_event(&ev), Some(Key::parse("R").unwrap()));
        let ev = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(Key::from_event(&ev), Some(Key::parse("<C-c>").unwrap()));
        let ev = KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT);
        assert_eq!(Key::from_event(&ev), Some(Key::parse("<BackTab>").unwrap()));
    }

    #[test]
    fn shipped_keymaps_parse_and_bind_every_action() {
        for (name, _) in SHIPPED {
            let km = Keymap::shipped(name).unwrap();
            for info in super::super::action::ACTIONS {
                assert!(
                    km.any_key_for(info.action).is_some(),
                    "{name}: `{}` has no key",
                    info.name
                );
            }
        }
        let vim = Keymap::shipped("vim").unwrap();
        let j = Key::parse("j").unwrap();
        assert_eq!(vim.resolve(Context::Tree, &j), Some(Action::Down));
    }

    #[test]
    fn user_layer_overrides_and_unbinds_per_key() {
        let mut km = Keymap::shipped("default").unwrap();
        let layer = KeymapLayer::parse(
            Path::new("keymap.toml"),
            "[global]\n\"x\" = \"rollback\"\n\"r\" = \"none\"\n",
        )
        .unwrap();
        km.apply(&layer);
        let x = Key::parse("x").unwrap();
        let r = Key::parse("r").unwrap();
        assert_eq!(km.resolve(Context::Tree, &x), Some(Action::Rollback));
        assert_eq!(km.resolve(Context::Global, &r), None);
    }

    #[test]
    fn bad_files_name_file_and_line() {
        let text = "[global]\n\"q\" = \"quit\"\n\"x\" = \"explode\"\n\"<Hyper-y>\" = \"quit\"\n\"R\" = \"rollback\"\n\"<S-r>\" = \"help\"\n[nowhere]\n\"a\" = \"quit\"\n";
        let errs = KeymapLayer::parse(Path::new("keymap.toml"), text).unwrap_err();
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("keymap.toml:3: unknown action `explode`")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.starts_with("keymap.toml:4: ")),
            "{msgs:?}"
        );
        assert!(msgs.iter().any(|m| m.contains("same key as")), "{msgs:?}");
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("keymap.toml:7: unknown section `[nowhere]`")),
            "{msgs:?}"
        );
        let errs = KeymapLayer::parse(Path::new("k.toml"), "[global]\n\"q\" = quit\n").unwrap_err();
        assert!(
            errs[0].to_string().starts_with("k.toml:2: not valid TOML"),
            "{}",
            errs[0]
        );
    }
}
