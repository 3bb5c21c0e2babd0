//! Data paths and CONDITIONAL evaluation (API.md section 3).

use crate::config::{Condition, ConditionalConfig, Operator};
use serde_json::{Map, Value, json};

/// What a data path can read: the lead's variables plus the facts the lead gathered
/// (`{"call": {...}, "application": {...}}`).
pub struct DataContext<'a> {
    pub lead_id: &'a str,
    pub workflow_id: &'a str,
    pub phone_number: &'a str,
    pub variables: &'a Map<String, Value>,
    pub facts: &'a Value,
}

fn walk<'v>(mut value: &'v Value, path: &str) -> Option<&'v Value> {
    for part in path.split('.') {
        value = match value {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

impl DataContext<'_> {
    pub fn lookup(&self, path: &str) -> Option<Value> {
        let path = path.trim();
        let found = match path {
            "call_status" => walk(self.facts, "call.status"),
            "phone_number" | "lead.phone_number" => {
                return Some(Value::String(self.phone_number.into()));
            }
            "lead_id" => return Some(Value::String(self.lead_id.into())),
            "workflow_id" => return Some(Value::String(self.workflow_id.into())),
            p if p.starts_with("call.") || p.starts_with("application.") => walk(self.facts, p),
            p => self.variables.get(p.strip_prefix("lead.").unwrap_or(p)),
        };
        found.filter(|v| !v.is_null()).cloned()
    }

    /// Replaces `{{path}}` in `template` with the value at that path (empty when missing).
    pub fn render(&self, template: &str) -> String {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            let Some(len) = rest[start + 2..].find("}}") else {
                break;
            };
            out.push_str(&rest[..start]);
            let path = &rest[start + 2..start + 2 + len];
            if let Some(v) = self.lookup(path) {
                out.push_str(&text_of(&v));
            }
            rest = &rest[start + 2 + len + 2..];
        }
        out.push_str(rest);
        out
    }
}

pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn number_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        _ => None,
    }
}

fn compare(op: Operator, actual: Option<&Value>, expected: Option<&Value>) -> bool {
    use std::cmp::Ordering;
    let Some(actual) = actual else {
        return matches!(op, Operator::NotExists | Operator::NotEquals | Operator::NotContains);
    };
    let expected = expected.cloned().unwrap_or(Value::Null);
    let ordering = match (number_of(actual), number_of(&expected)) {
        (Some(a), Some(b)) => a.partial_cmp(&b),
        _ => Some(
            text_of(actual)
                .trim()
                .to_lowercase()
                .cmp(&text_of(&expected).trim().to_lowercase()),
        ),
    };
    let contains = || {
        text_of(actual)
            .to_lowercase()
            .contains(text_of(&expected).trim().to_lowercase().as_str())
    };
    match op {
        Operator::Exists => true,
        Operator::NotExists => false,
        Operator::Equals => ordering == Some(Ordering::Equal),
        Operator::NotEquals => ordering != Some(Ordering::Equal),
        Operator::Contains => contains(),
        Operator::NotContains => !contains(),
        Operator::GreaterThan => ordering == Some(Ordering::Greater),
        Operator::LessThan => ordering == Some(Ordering::Less),
        Operator::GreaterOrEqual => matches!(ordering, Some(Ordering::Greater | Ordering::Equal)),
        Operator::LessOrEqual => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
    }
}

fn evaluate_rule(ctx: &DataContext<'_>, rule: &Condition) -> (bool, Value) {
    let actual = ctx.lookup(&rule.field);
    let result = compare(rule.operator, actual.as_ref(), rule.value.as_ref());
    (
        result,
        json!({"field": rule.field, "actual": actual, "expected": rule.value, "result": result}),
    )
}

/// Evaluates a CONDITIONAL node: its outcome (edge label to follow) and a detail of the values compared.
pub fn evaluate(ctx: &DataContext<'_>, config: &ConditionalConfig) -> (String, Value) {
    match config {
        ConditionalConfig::Branch { field, branches } => {
            let actual = ctx.lookup(field);
            let text = actual.as_ref().map(|v| text_of(v).trim().to_lowercase());
            let outcome = branches
                .iter()
                .find(|b| text.as_deref() == Some(b.trim().to_lowercase().as_str()))
                .cloned()
                .unwrap_or_else(|| "no_match".into());
            (
                outcome.clone(),
                json!({"field": field, "actual": actual, "outcome": outcome}),
            )
        }
        ConditionalConfig::Rules { all, conditions } => {
            let checks: Vec<(bool, Value)> = conditions.iter().map(|c| evaluate_rule(ctx, c)).collect();
            let result = if *all {
                checks.iter().all(|c| c.0)
            } else {
                checks.iter().any(|c| c.0)
            };
            let rules: Vec<Value> = checks.into_iter().map(|c| c.1).collect();
            (
                result.to_string(),
                json!({"logic": if *all { "AND" } else { "OR" }, "rules": rules, "outcome": result.to_string()}),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;
    use crate::model::NodeType;

    fn conditional(v: Value) -> ConditionalConfig {
        match NodeConfig::parse(NodeType::Conditional, &v).unwrap() {
            NodeConfig::Conditional(c) => c,
            _ => unreachable!(),
        }
    }

    fn ctx<'a>(vars: &'a Map<String, Value>, facts: &'a Value) -> DataContext<'a> {
        DataContext {
            lead_id: "wlead_1",
            workflow_id: "wfl_1",
            phone_number: "+12015550101",
            variables: vars,
            facts,
        }
    }

    #[test]
    fn rules_compare_numbers_and_strings_ignoring_case() {
        let vars = json!({"interest": " Yes ", "budget": "250000"})
            .as_object()
            .unwrap()
            .clone();
        let facts = json!({"call": {"status": "COMPLETED", "analysis": {"interest": "yes"}}});
        let c = ctx(&vars, &facts);
        let cfg = conditional(json!({"logic": "AND", "conditions": [
            {"field": "lead.interest", "operator": "equals", "value": "yes"},
            {"field": "budget", "operator": "greater_than", "value": 100000},
            {"field": "call.analysis.interest", "operator": "equals", "value": "YES"}]}));
        assert_eq!(evaluate(&c, &cfg).0, "true");
        let cfg = conditional(json!({"conditions": [{"field": "budget", "operator": "less_than", "value": "99999"}]}));
        assert_eq!(evaluate(&c, &cfg).0, "false");
    }

    #[test]
    fn missing_field_is_false_except_negations() {
        let vars = Map::new();
        let facts = json!({});
        let c = ctx(&vars, &facts);
        for (op, expect) in [
            ("equals", "false"),
            ("not_equals", "true"),
            ("not_contains", "true"),
            ("contains", "false"),
        ] {
            let cfg = conditional(json!({"conditions": [{"field": "x", "operator": op, "value": "a"}]}));
            assert_eq!(evaluate(&c, &cfg).0, expect, "{op}");
        }
        let cfg = conditional(json!({"conditions": [{"field": "x", "operator": "not_exists"}]}));
        assert_eq!(evaluate(&c, &cfg).0, "true");
    }

    #[test]
    fn branch_form_matches_case_insensitively() {
        let vars = Map::new();
        let facts = json!({"call": {"status": "NO_ANSWER"}});
        let c = ctx(&vars, &facts);
        let cfg = conditional(json!({"condition_field": "call_status", "branches": ["completed", "no_answer"]}));
        assert_eq!(evaluate(&c, &cfg).0, "no_answer");
        let cfg = conditional(json!({"condition_field": "call_status", "branches": ["BUSY"]}));
        assert_eq!(evaluate(&c, &cfg).0, "no_match");
    }

    #[test]
    fn renders_templates() {
        let vars = json!({"name": "Avery"}).as_object().unwrap().clone();
        let facts = json!({});
        assert_eq!(
            ctx(&vars, &facts).render("Hi {{name}} at {{phone_number}}{{missing}}"),
            "Hi Avery at +12015550101"
        );
    }
}
