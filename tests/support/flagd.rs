//! A flags file as a real flagd provider reads it: flagd's evaluator
//! (`flagd-evaluation-engine`: flagd's flag parser and its JSONLogic targeting with flagd's
//! operators). Resolution follows flagd's rule (the in-process and file providers): a
//! disabled flag is an error; the targeting's variant, or the default variant when
//! targeting returns null or is empty.

use flagd_evaluation_engine::{FlagParser, Operator};
use open_feature::EvaluationContext;
use serde_json::Value;

/// What a flagd provider answers for `key` with the context `{tenant}`.
pub fn evaluate(file: &str, key: &str, tenant: &str) -> Value {
    let parsed = FlagParser::parse_string(file).expect("flagd parses the file");
    let flag = parsed
        .flags
        .get(key)
        .unwrap_or_else(|| panic!("no flag {key}"));
    assert_eq!(flag.state, "ENABLED", "{key}");
    let ctx = EvaluationContext::default()
        .with_targeting_key(tenant)
        .with_custom_field("tenant", tenant);
    let targeting = flag.get_targeting();
    let variant = if targeting == "{}" {
        flag.default_variant.clone()
    } else {
        Operator::new()
            .apply(key, &targeting, &ctx)
            .expect("targeting evaluates")
            .unwrap_or_else(|| flag.default_variant.clone())
    };
    flag.variants
        .get(&variant)
        .cloned()
        .unwrap_or_else(|| panic!("{key}: variant {variant:?} is not defined"))
}
