//! Tenants in rings: the types of `[[tenant]]`, `[[ring]]`, `[flags]` and `[release]
//! failure_budget`, and the arithmetic the plan and the engine share (which ring holds which
//! tenant, what a percentage of tenants is).
//!
//! ```toml
//! [release]
//! failure_budget = 1                    # or "10%" of the tenants, rounded down
//!
//! [flags]
//! file = "flags.json"                   # the flagd file cutover writes
//! defaults = { theme = "classic" }      # for tenants that do not set a flag
//!
//! [[tenant]]
//! name = "acme"
//! tags = ["tier/gold", "region/eu"]
//! vars = { port = 19951 }               # over [vars] and the environment's vars, under --set
//! flags = { new_checkout = true }
//! approval = { timeout = "30m" }        # a gate before the tenant's first service starts
//! analysis = { max_error_rate = 0.01 }  # bounds that tighten every service's analysis
//! [[tenant.smoke]]                      # extra smoke tests of one of the tenant's services
//! service = "api"
//! name = "acme-login"
//! request = "GET /acme/login"
//!
//! [[ring]]
//! name = "early"
//! select = ["acme", "tag:tier/gold"]    # names and tag:TAG; a tenant is in the first ring that selects it
//! max_parallel = 2                      # or "25%" of the ring's tenants, rounded up
//! bake = "10m"                          # after its last tenant promoted, before the next ring
//! ```
//!
//! Each tenant runs every service of the release against its own instance: the release is
//! resolved once per tenant with the tenant's `vars` laid over `[vars]` and the environment's
//! vars, under `--set` ([`super::fleet`]); its extra smoke tests and analysis bounds are
//! folded into its services. The plan and the engine name a tenant's services
//! `TENANT/SERVICE`; dependencies stay inside the tenant.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::model::{Dur, OnTimeout};

/// A number of tenants, written as an integer or as a percentage `"N%"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Amount {
    Count(u32),
    Percent(u8),
}

impl Amount {
    /// `"N%"` read as a percentage (0-100); `None` for anything else.
    pub fn parse_percent(s: &str) -> Option<Amount> {
        let digits = s.trim().strip_suffix('%')?.trim();
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || digits.len() > 3 {
            return None;
        }
        let n: u16 = digits.parse().ok()?;
        (n <= 100).then_some(Amount::Percent(n as u8))
    }

    /// As a failure budget of `total` tenants: a percentage is rounded down (a budget is an
    /// allowance: "10%" of 8 tenants is 0 failures, not 1).
    pub fn budget_of(self, total: usize) -> usize {
        match self {
            Amount::Count(n) => n as usize,
            Amount::Percent(p) => total * usize::from(p) / 100,
        }
    }

    /// As the `max_parallel` of a ring of `size` tenants: a percentage is rounded up, and
    /// the result is at least 1 and at most the ring's size (when it has any).
    pub fn parallel_of(self, size: usize) -> usize {
        let n = match self {
            Amount::Count(n) => n as usize,
            Amount::Percent(p) => (size * usize::from(p)).div_ceil(100),
        };
        n.clamp(1, size.max(1))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Amount::Count(n) => s.serialize_u32(*n),
            Amount::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            N(u32),
            S(String),
        }
        match Repr::deserialize(d)? {
            Repr::N(n) => Ok(Amount::Count(n)),
            Repr::S(s) => Amount::parse_percent(&s).ok_or_else(|| {
                serde::de::Error::custom(format!("`{s}` is not an integer or \"N%\""))
            }),
        }
    }
}

impl JsonSchema for Amount {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Amount".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A number of tenants: an integer, or a percentage of them written \"N%\" (0-100).",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^[0-9]{1,3}%$"}
            ],
            "examples": [1, "10%"]
        })
    }
}

/// A variable's value in a tenant's `vars`: a string, integer, float or boolean, of the
/// type `[vars]` declares it with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum VarValue {
    Boolean(bool),
    Integer(i64),
    Float(f64),
    String(String),
}

/// A feature flag's value: boolean or string (flagd variants of that type).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(untagged)]
pub enum FlagValue {
    Bool(bool),
    String(String),
}

impl FlagValue {
    /// `boolean` or `string`, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            FlagValue::Bool(_) => "boolean",
            FlagValue::String(_) => "string",
        }
    }
}

impl fmt::Display for FlagValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlagValue::Bool(b) => write!(f, "{b}"),
            FlagValue::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// The `[flags]` table: the flagd flag-definition file cutover writes as tenants promote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagsSection {
    /// The flagd flag-definition file (JSON), relative to the release file. Cutover
    /// rewrites it atomically: each flag the tenants set becomes a flag with targeting on
    /// the evaluation-context attribute `tenant`; flags cutover does not manage are kept.
    pub file: String,
    /// The value of a flag for tenants that do not set it (and have not promoted yet).
    /// Boolean flags default to `false`; a string flag needs a default here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub defaults: BTreeMap<String, FlagValue>,
}

/// One `[[tenant]]`: a customer's instance of every service of the release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// The tenant's name, unique in the release: letters, digits, `-`, `_` and `.`. Its
    /// services are named `TENANT/SERVICE`; flagd sees it as the context attribute `tenant`.
    pub name: String,
    /// Tags that rings select with `tag:TAG` (`tier/gold`, `region/eu`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Variables of this tenant's instance, laid over `[vars]` and the environment's `vars`
    /// (and under `--set`). Each must be declared in `[vars]`, with the same type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, VarValue>,
    /// Feature flags this tenant gets once it is promoted: flag key to `true`/`false` or a
    /// string. Written into the `[flags]` file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flags: BTreeMap<String, FlagValue>,
    /// Extra smoke tests run against this tenant's candidate of one service, after the
    /// service's own, written as `[[tenant.smoke]]` tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub smoke: Vec<TenantSmoke>,
    /// Stricter analysis bounds for this tenant: each tightens (never loosens) the
    /// `[service.analysis]` of every service that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<TenantAnalysis>,
    /// An approval gate before this tenant's first service starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<TenantApproval>,
}

/// One `[[tenant.smoke]]`: a smoke test of one of the tenant's services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantSmoke {
    /// The service (of the release) whose candidate this test checks.
    pub service: String,
    /// A name for reports.
    pub name: String,
    /// `METHOD /path`, sent to the candidate through the test route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The status the request must answer with.
    #[serde(default = "default_expect_status")]
    pub expect_status: u16,
    /// A program and its arguments (argv); `{url}` is replaced by the candidate's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// A smoke test that takes longer than this fails.
    #[serde(default = "super::model::default_smoke_timeout")]
    pub timeout: Dur,
}

fn default_expect_status() -> u16 {
    200
}

impl TenantSmoke {
    /// As a service's smoke test.
    pub fn to_smoke(&self) -> super::model::Smoke {
        super::model::Smoke {
            name: self.name.clone(),
            request: self.request.clone(),
            expect_status: self.expect_status,
            command: self.command.clone(),
            timeout: self.timeout,
        }
    }
}

/// `[tenant.analysis]`: bounds that tighten every service's `[service.analysis]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantAnalysis {
    /// How many times worse than the baseline the canary may be (> 1); at most each
    /// service's `tolerance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// Hard bound on the canary's error rate (0-1); at most each service's `max_error_rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    /// Hard bound on the canary's p99 latency; at most each service's `max_p99`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99: Option<Dur>,
}

/// `[tenant.approval]`: people approve before the tenant's first service starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantApproval {
    /// How long to wait for the approvals.
    pub timeout: Dur,
    /// What happens when nobody answers in time: `rollback` (the tenant is skipped, and
    /// counts as failed), `promote` (it starts), `pause` (keep waiting).
    #[serde(default)]
    pub on_timeout: OnTimeout,
    /// How many distinct people must approve (1-10); one rejection is enough.
    #[serde(default = "one")]
    pub approvals: u32,
    /// Who may approve: operators by name or `group:NAME` of the policy's `[roster]`;
    /// absent = anyone (or the policy's `[approval]`, which this narrows, never widens).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// The person who started the release may not approve.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub four_eyes: bool,
}

fn one() -> u32 {
    1
}

/// One `[[ring]]`: a group of tenants deployed together, in file order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ring {
    /// The ring's name, unique in the release.
    pub name: String,
    /// Tenant names and `tag:TAG`; a tenant is in the first ring that selects it. Tenants
    /// start in the order selected (a tag's tenants in file order).
    pub select: Vec<String>,
    /// How many of the ring's tenants deploy at once: an integer, or `"N%"` of the ring's
    /// tenants rounded up (at least 1).
    #[serde(default = "one_tenant")]
    pub max_parallel: Amount,
    /// After the ring's last tenant promoted, how long its tenants stay under health checks
    /// and analysis before the next ring starts (the last ring's bake ends the release).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bake: Dur,
}

fn one_tenant() -> Amount {
    Amount::Count(1)
}

fn is_zero(d: &Dur) -> bool {
    d.0.is_zero()
}

/// A selector of `select`: a tenant's name or `tag:TAG`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector<'a> {
    Name(&'a str),
    Tag(&'a str),
}

impl<'a> Selector<'a> {
    pub fn parse(s: &'a str) -> Selector<'a> {
        match s.strip_prefix("tag:") {
            Some(tag) => Selector::Tag(tag),
            None => Selector::Name(s),
        }
    }
}

/// Which tenants each ring holds (indices into `tenants`), in start order: a tenant is in
/// the first ring that selects it; within a ring, in the order its selectors list them (a
/// tag's tenants in file order). Unknown names and tags select nobody (validation reports
/// them). Tenants no ring selects are in no list.
pub fn members(tenants: &[Tenant], rings: &[Ring]) -> Vec<Vec<usize>> {
    let mut by_name: HashMap<&str, usize> = HashMap::with_capacity(tenants.len());
    for (i, t) in tenants.iter().enumerate() {
        by_name.entry(t.name.as_str()).or_insert(i);
    }
    let mut by_tag: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, t) in tenants.iter().enumerate() {
        for tag in &t.tags {
            let list = by_tag.entry(tag.as_str()).or_default();
            if list.last() != Some(&i) {
                list.push(i);
            }
        }
    }
    let mut taken = vec![false; tenants.len()];
    rings
        .iter()
        .map(|r| {
            let mut out = Vec::new();
            for s in &r.select {
                let picked: &[usize] = match Selector::parse(s) {
                    Selector::Name(n) => by_name.get(n).map(std::slice::from_ref).unwrap_or(&[]),
                    Selector::Tag(t) => by_tag.get(t).map(Vec::as_slice).unwrap_or(&[]),
                };
                for &i in picked {
                    if !taken[i] {
                        taken[i] = true;
                        out.push(i);
                    }
                }
            }
            out
        })
        .collect()
}

/// A tenant's name: letters, digits, `-`, `_` and `.`, not empty, at most 63 characters
/// (it is part of service names, journal entries and the flagd context).
pub fn is_tenant_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A flag key flagd accepts: its schema's `flags` keys match `^.{1,}$` (ECMAScript), so
/// any non-empty string without a line terminator (`\n`, `\r`, U+2028, U+2029).
pub fn is_flagd_key(s: &str) -> bool {
    !s.is_empty() && !s.contains(['\n', '\r', '\u{2028}', '\u{2029}'])
}

/// The qualified name of a tenant's service, as the plan and the engine show it.
pub fn qualified(tenant: &str, service: &str) -> String {
    format!("{tenant}/{service}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str, tags: &[&str]) -> Tenant {
        Tenant {
            name: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            vars: BTreeMap::new(),
            flags: BTreeMap::new(),
            smoke: Vec::new(),
            analysis: None,
            approval: None,
        }
    }

    fn ring(name: &str, select: &[&str]) -> Ring {
        Ring {
            name: name.into(),
            select: select.iter().map(|s| s.to_string()).collect(),
            max_parallel: Amount::Count(1),
            bake: Dur::default(),
        }
    }

    #[test]
    fn a_tenant_is_in_the_first_ring_that_selects_it_in_selection_order() {
        let ts = [
            tenant("a", &["gold"]),
            tenant("b", &[]),
            tenant("c", &["gold", "eu"]),
            tenant("d", &["eu"]),
        ];
        let rs = [
            ring("early", &["b", "tag:gold"]),
            ring("late", &["tag:eu", "a", "nobody", "tag:none"]),
        ];
        assert_eq!(members(&ts, &rs), vec![vec![1, 0, 2], vec![3]]);
    }

    #[test]
    fn amounts_round_as_documented() {
        assert_eq!(Amount::Percent(10).budget_of(8), 0);
        assert_eq!(Amount::Percent(25).budget_of(8), 2);
        assert_eq!(Amount::Count(3).budget_of(8), 3);
        assert_eq!(Amount::Percent(25).parallel_of(5), 2);
        assert_eq!(Amount::Percent(1).parallel_of(5), 1);
        assert_eq!(Amount::Percent(0).parallel_of(5), 1);
        assert_eq!(Amount::Count(9).parallel_of(3), 3);
        assert_eq!(Amount::parse_percent("25%"), Some(Amount::Percent(25)));
        assert_eq!(Amount::parse_percent("101%"), None);
        assert_eq!(Amount::parse_percent("-1%"), None);
        assert_eq!(Amount::parse_percent("%"), None);
        assert_eq!(Amount::parse_percent("1.5%"), None);
    }

    #[test]
    fn flagd_keys_are_non_empty_single_lines() {
        assert!(is_flagd_key("new_checkout"));
        assert!(is_flagd_key("checkout.v2 beta/é"));
        assert!(!is_flagd_key(""));
        assert!(!is_flagd_key("a\nb"));
        assert!(!is_flagd_key("a\u{2028}b"));
        assert!(is_tenant_name("acme-eu.1"));
        assert!(!is_tenant_name("acme/eu"));
        assert!(!is_tenant_name(""));
    }
}
