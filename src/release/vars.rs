//! Variables: the `[vars]` table, `${name}` in any string of the release, and `--set
//! NAME=VALUE` on the command line.
//!
//! A variable is a TOML scalar (string, integer, float, boolean). `${name}` inside a longer
//! string is replaced by the value's text; a string that is exactly `${name}` becomes the
//! value itself, with its type (`replicas = "${replicas}"` is an integer when `replicas` is).
//! `$${` writes a literal `${`. A value `"env:NAME"` (in `[vars]` or in `--set`) is read
//! from the environment: such values are secret (see [`crate::secrets`]) and are recorded by
//! the variable's and the environment variable's names only, never by value.
//!
//! This works on TOML's spanned tree before the typed parse, so a value that came from a
//! variable keeps the place where `${name}` was written, and every error is located in the
//! original file. Nothing here slices a string at a position it did not find itself: any
//! input is safe (the fuzz target of the interpolation).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::{Diagnostic, SourceMap, nearest};

/// One `--set NAME=VALUE` as given on the command line (`VALUE` may be `env:VAR`).
/// This raw form is what the journal keeps: for an `env:` value, only the variable's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct SetArg {
    pub name: String,
    pub value: String,
}

impl SetArg {
    /// The environment variable this value is read from, for `env:VAR`.
    pub fn env_var(&self) -> Option<&str> {
        self.value.strip_prefix("env:")
    }

    /// `NAME=VALUE` as written (for `env:` values that is the variable's name, not its value).
    pub fn as_arg(&self) -> String {
        format!("{}={}", self.name, self.value)
    }
}

impl std::str::FromStr for SetArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((name, value)) = s.split_once('=') else {
            return Err(format!(
                "`{s}` is not NAME=VALUE; write e.g. --set replicas=3 or --set token=env:API_TOKEN"
            ));
        };
        let name = name.trim();
        if !is_name(name) {
            return Err(format!(
                "`{name}` is not a variable name: use letters, digits, `_` and `-` (e.g. --set image_tag=2.3.1)"
            ));
        }
        Ok(SetArg {
            name: name.to_string(),
            value: value.to_string(),
        })
    }
}

/// The `--set` values with the last of each name kept, sorted by name: the form the
/// artifact identity and the journal use.
pub fn normalized(sets: &[SetArg]) -> Vec<SetArg> {
    let mut by_name = BTreeMap::new();
    for s in sets {
        by_name.insert(s.name.clone(), s.clone());
    }
    by_name.into_values().collect()
}

/// A variable name: letters, digits, `_` and `-`, not empty.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// One piece of a string with `${...}` in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Var(String),
}

/// Why a string's `${...}` cannot be read. `at` is the byte offset of the `${` in the string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    Unterminated { at: usize },
    BadName { at: usize, name: String },
}

/// Split a string into text and `${name}` references (`$${` is a literal `${`). Never
/// panics: it slices only at the positions of the ASCII characters it found.
pub fn parse_template(s: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut pos = 0;
    while let Some(found) = s.get(pos..).and_then(|r| r.find('$')) {
        let at = pos + found;
        text.push_str(s.get(pos..at).unwrap_or_default());
        let rest = s.get(at..).unwrap_or_default();
        if rest.starts_with("$${") {
            text.push_str("${");
            pos = at + 3;
        } else if let Some(inner) = rest.strip_prefix("${") {
            let Some(close) = inner.find('}') else {
                return Err(TemplateError::Unterminated { at });
            };
            let name = inner.get(..close).unwrap_or_default();
            if !is_name(name) {
                return Err(TemplateError::BadName {
                    at,
                    name: name.to_string(),
                });
            }
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Var(name.to_string()));
            pos = at + 2 + close + 1;
        } else {
            text.push('$');
            pos = at + 1;
        }
    }
    text.push_str(s.get(pos..).unwrap_or_default());
    if !text.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// `s` written so that [`parse_template`] reads it back as the plain text `s`: every `${`
/// becomes `$${`. `render` uses it, so a resolved value is not interpolated twice.
pub fn escape(s: &str) -> String {
    s.replace("${", "$${")
}

/// A value read for a variable, and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Var<'i> {
    pub value: DeValue<'i>,
    /// Where the variable is declared (its key in `[vars]` or an environment's `vars`).
    pub decl: Range<usize>,
    /// `Some(VAR)` when the value was read from the environment variable `VAR`.
    pub from_env: Option<String>,
}

/// The variables in force, by name.
pub(crate) type Vars<'i> = BTreeMap<String, Var<'i>>;

/// The text of a `--set`, read before the document is parsed (an `env:` value is read from
/// the environment here), so the values built from it can live in the document's tree.
#[derive(Debug, Clone)]
pub(crate) struct SetText {
    pub arg: SetArg,
    /// The value's text; `None` when its environment variable is not set.
    pub text: Option<String>,
}

/// Read each `--set` (last one of a name wins).
pub(crate) fn read_sets(sets: &[SetArg]) -> Vec<SetText> {
    normalized(sets)
        .into_iter()
        .map(|arg| {
            let text = match arg.env_var() {
                Some(var) => std::env::var(var).ok(),
                None => Some(arg.value.clone()),
            };
            SetText { arg, text }
        })
        .collect()
}

/// What resolving the variables reports and records.
pub(crate) struct Ctx<'m> {
    pub map: &'m SourceMap,
    pub text: &'m str,
    pub diags: Vec<Diagnostic>,
    /// A missing environment variable is not an error (`validate` without secrets at hand):
    /// the variable keeps the value declared in the file.
    pub lenient_env: bool,
    /// Values read from the environment: secret.
    pub env_values: Vec<String>,
    /// Where a whole value came from a variable: span start -> variable name.
    pub substituted: HashMap<usize, String>,
}

impl Ctx<'_> {
    fn err(&mut self, span: Option<Range<usize>>, msg: impl Into<String>, hint: String) {
        self.diags.push(self.map.diagnostic(span, msg, Some(hint)));
    }

    /// The span of `needle` inside `span` in the source, else `span` itself.
    fn inner_span(&self, span: &Range<usize>, needle: &str) -> Range<usize> {
        self.text
            .get(span.clone())
            .and_then(|s| s.find(needle))
            .map_or(span.clone(), |i| {
                span.start + i..span.start + i + needle.len()
            })
    }

    /// Read a table of variables (`[vars]`, an environment's `vars`) into `into`.
    pub fn declare<'i>(&mut self, table: &Spanned<DeValue<'i>>, what: &str, into: &mut Vars<'i>) {
        let DeValue::Table(t) = table.get_ref() else {
            self.err(
                Some(table.span()),
                format!(
                    "{what} must be a table of values, not {}",
                    table.get_ref().type_str()
                ),
                "write it like `vars = { replicas = 2, image_tag = \"2.3.1\" }`".into(),
            );
            return;
        };
        for (k, v) in t.iter() {
            let name: &str = k.get_ref();
            if !is_name(name) {
                self.err(
                    Some(k.span()),
                    format!("`{name}` in {what} is not a variable name"),
                    "use letters, digits, `_` and `-`, so that `${name}` can refer to it".into(),
                );
                continue;
            }
            let mut from_env = None;
            let value = match v.get_ref() {
                DeValue::String(s) => {
                    match s.strip_prefix("env:") {
                        Some(var) => match std::env::var(var) {
                            Ok(value) => {
                                from_env = Some(var.to_string());
                                self.env_values.push(value.clone());
                                DeValue::String(Cow::Owned(value))
                            }
                            Err(_) if self.lenient_env => {
                                from_env = Some(var.to_string());
                                v.get_ref().clone()
                            }
                            Err(_) => {
                                self.err(
                                Some(v.span()),
                                format!("variable `{name}`: the environment variable `{var}` is not set"),
                                format!("export {var}, or give the value with --set {name}=VALUE"),
                            );
                                // Still declared, so its uses are not reported again.
                                from_env = Some(var.to_string());
                                v.get_ref().clone()
                            }
                        },
                        None => v.get_ref().clone(),
                    }
                }
                DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) => {
                    v.get_ref().clone()
                }
                other => {
                    self.err(
                        Some(v.span()),
                        format!(
                            "variable `{name}` must be a string, integer, float or boolean, not {}",
                            other.type_str()
                        ),
                        format!("write it like `{name} = \"value\"` or `{name} = 3`"),
                    );
                    continue;
                }
            };
            into.insert(
                name.to_string(),
                Var {
                    value,
                    decl: k.span(),
                    from_env,
                },
            );
        }
    }

    /// Apply `--set` values over the declared variables; `at` is where to point when a
    /// name is not declared (the `[vars]` table, or the file's start).
    pub fn apply_sets<'i>(
        &mut self,
        sets: &'i [SetText],
        vars: &mut Vars<'i>,
        at: Option<Range<usize>>,
    ) {
        for s in sets {
            let name = s.arg.name.as_str();
            let Some(var) = vars.get_mut(name) else {
                let known: Vec<&str> = Vec::new();
                let names: Vec<String> = vars.keys().cloned().collect();
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let hint = match nearest(name, if refs.is_empty() { &known } else { &refs }) {
                    Some(n) => format!(
                        "did you mean --set {n}=...? a --set can only change a declared variable"
                    ),
                    None if names.is_empty() => {
                        format!("declare it first: add `[vars]` with `{name} = ...`")
                    }
                    None => format!("declared variables: {}", names.join(", ")),
                };
                self.err(
                    at.clone(),
                    format!("--set {name}: the release declares no variable `{name}`"),
                    hint,
                );
                continue;
            };
            let Some(text) = &s.text else {
                let env = s.arg.env_var().unwrap_or_default();
                if self.lenient_env {
                    var.from_env = Some(env.to_string());
                    continue;
                }
                self.err(
                    Some(var.decl.clone()),
                    format!(
                        "--set {}: the environment variable `{env}` is not set",
                        s.arg.as_arg()
                    ),
                    format!("export {env}, or pass the value itself with --set {name}=VALUE"),
                );
                continue;
            };
            let shown = if s.arg.env_var().is_some() {
                format!("the value of `{}`", s.arg.value)
            } else {
                format!("`{text}`")
            };
            let converted = match &var.value {
                DeValue::String(_) => Some(DeValue::String(Cow::Borrowed(text.as_str()))),
                DeValue::Integer(_) => DeValue::parse(text.trim())
                    .ok()
                    .map(|v| v.into_inner())
                    .filter(DeValue::is_integer),
                DeValue::Float(_) => DeValue::parse(text.trim())
                    .ok()
                    .map(|v| v.into_inner())
                    .filter(|v| v.is_float() || v.is_integer()),
                DeValue::Boolean(_) => DeValue::parse(text.trim())
                    .ok()
                    .map(|v| v.into_inner())
                    .filter(DeValue::is_bool),
                _ => None,
            };
            match converted {
                Some(value) => {
                    var.value = value;
                    var.from_env = s.arg.env_var().map(str::to_string);
                    if var.from_env.is_some() {
                        self.env_values.push(text.clone());
                    }
                }
                None => {
                    let ty = var.value.type_str();
                    self.err(
                        Some(var.decl.clone()),
                        format!(
                            "--set {name}: {shown} is not {} {ty}, the type `{name}` is declared with here",
                            if ty == "integer" { "an" } else { "a" }
                        ),
                        format!("pass {} {ty}, or change the declaration", if ty == "integer" { "an" } else { "a" }),
                    );
                }
            }
        }
    }

    /// Replace every `${name}` in the strings of `table` (recursively).
    pub fn interpolate<'i>(&mut self, table: &mut DeTable<'i>, vars: &Vars<'i>) {
        for (_, v) in table.iter_mut() {
            self.interpolate_value(v, vars);
        }
    }

    fn interpolate_value<'i>(&mut self, v: &mut Spanned<DeValue<'i>>, vars: &Vars<'i>) {
        let span = v.span();
        match v.get_mut() {
            DeValue::Table(t) => self.interpolate(t, vars),
            DeValue::Array(items) => {
                for item in items.iter_mut() {
                    self.interpolate_value(item, vars);
                }
            }
            DeValue::String(s) if s.contains('$') => {
                let pieces = match parse_template(s) {
                    Ok(p) => p,
                    Err(e) => {
                        let (needle, msg) = match &e {
                            TemplateError::Unterminated { .. } => {
                                ("${".to_string(), "`${` without a closing `}`".to_string())
                            }
                            TemplateError::BadName { name, .. } => (
                                format!("${{{name}}}"),
                                format!("`${{{name}}}` is not a variable reference"),
                            ),
                        };
                        let at = self.inner_span(&span, &needle);
                        self.err(
                            Some(at),
                            msg,
                            "write `${name}` with letters, digits, `_` and `-` in the name, or `$${` for a literal `${`".into(),
                        );
                        return;
                    }
                };
                if let [Piece::Var(name)] = pieces.as_slice() {
                    if let Some(var) = self.lookup(vars, name, &span) {
                        let value = var.value.clone();
                        self.substituted.insert(span.start, name.clone());
                        *v = Spanned::new(span, value);
                    }
                    return;
                }
                let mut out = String::new();
                let mut ok = true;
                for p in &pieces {
                    match p {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Var(name) => match self.lookup(vars, name, &span) {
                            Some(var) => out.push_str(&scalar_text(&var.value)),
                            None => ok = false,
                        },
                    }
                }
                if ok {
                    *v = Spanned::new(span, DeValue::String(Cow::Owned(out)));
                }
            }
            _ => {}
        }
    }

    fn lookup<'v, 'i>(
        &mut self,
        vars: &'v Vars<'i>,
        name: &str,
        span: &Range<usize>,
    ) -> Option<&'v Var<'i>> {
        if let Some(v) = vars.get(name) {
            return Some(v);
        }
        let names: Vec<&str> = vars.keys().map(String::as_str).collect();
        let hint = match nearest(name, &names) {
            Some(n) => format!("did you mean `${{{n}}}`?"),
            None if names.is_empty() => {
                format!(
                    "declare it: add `[vars]` with `{name} = ...` (or write `$${{` for a literal `${{`)"
                )
            }
            None => format!(
                "declared variables: {}; or declare `{name}` in [vars]",
                names.join(", ")
            ),
        };
        let at = self.inner_span(span, &format!("${{{name}}}"));
        self.err(Some(at), format!("unknown variable `{name}`"), hint);
        None
    }
}

/// A scalar's text inside a longer string.
fn scalar_text(v: &DeValue) -> String {
    match v {
        DeValue::String(s) => s.to_string(),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .map_or_else(|_| i.as_str().to_string(), |n| n.to_string()),
        DeValue::Float(f) => f.as_str().to_string(),
        DeValue::Boolean(b) => b.to_string(),
        other => other.type_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn templates_split_into_text_and_names() {
        assert_eq!(
            parse_template("img:${tag}-x").unwrap(),
            vec![
                Piece::Text("img:".into()),
                Piece::Var("tag".into()),
                Piece::Text("-x".into())
            ]
        );
        assert_eq!(
            parse_template("${a}").unwrap(),
            vec![Piece::Var("a".into())]
        );
        assert_eq!(
            parse_template("$$${a} $5 $${b}").unwrap(),
            vec![Piece::Text("$${a} $5 ${b}".into())]
        );
        assert_eq!(
            parse_template("x ${a").unwrap_err(),
            TemplateError::Unterminated { at: 2 }
        );
        assert_eq!(
            parse_template("é${a b}").unwrap_err(),
            TemplateError::BadName {
                at: 2,
                name: "a b".into()
            }
        );
    }

    #[test]
    fn set_args_parse() {
        let s: SetArg = "replicas=3".parse().unwrap();
        assert_eq!((s.name.as_str(), s.value.as_str()), ("replicas", "3"));
        let s: SetArg = "url=a=b".parse().unwrap();
        assert_eq!(s.value, "a=b");
        assert!("noequals".parse::<SetArg>().is_err());
        assert!("bad name=1".parse::<SetArg>().is_err());
        let n = normalized(&[
            "b=1".parse().unwrap(),
            "a=2".parse().unwrap(),
            "b=3".parse().unwrap(),
        ]);
        assert_eq!(
            n.iter().map(SetArg::as_arg).collect::<Vec<_>>(),
            ["a=2", "b=3"]
        );
    }

    proptest! {
        #[test]
        fn any_input_is_safe(s in "\\PC*") {
            let _ = parse_template(&s);
        }

        #[test]
        fn escaped_text_reads_back_as_itself(s in "[$a{}é ]{0,24}") {
            let pieces = parse_template(&escape(&s)).unwrap();
            prop_assert_eq!(pieces, vec![Piece::Text(s.clone())]);
        }
    }
}
