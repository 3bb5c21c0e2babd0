//! Node configs per type (API.md section 3), parsed from JSON with the failing field named.

use crate::Invalid;
use crate::model::{CallOutcome, NodeType};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub const MAX_CONFIG_BYTES: usize = 64 * 1024;
const MINUTE_MS: f64 = 60_000.0;
const MAX_DELAY_MS: f64 = 365.0 * 24.0 * 60.0 * MINUTE_MS;

#[derive(Debug, Clone, PartialEq)]
pub struct VoiceCallConfig {
    pub agent_id: Option<String>,
    pub from_phone_number: Option<String>,
    pub max_attempts: u32,
    pub retry_on: Vec<CallOutcome>,
    pub retry_delay_minutes: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TimeConfig {
    /// Elapsed wait in milliseconds (unscaled).
    Delay { ms: i64 },
    /// Wait until the instant in a data path.
    Until { field: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: String,
    pub operator: Operator,
    pub value: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    NotEquals,
    Contains,
    NotContains,
    GreaterThan,
    LessThan,
    GreaterOrEqual,
    LessOrEqual,
    Exists,
    NotExists,
}

const OPERATORS: &[(&str, Operator)] = &[
    ("equals", Operator::Equals),
    ("not_equals", Operator::NotEquals),
    ("contains", Operator::Contains),
    ("not_contains", Operator::NotContains),
    ("greater_than", Operator::GreaterThan),
    ("less_than", Operator::LessThan),
    ("greater_or_equal", Operator::GreaterOrEqual),
    ("less_or_equal", Operator::LessOrEqual),
    ("exists", Operator::Exists),
    ("not_exists", Operator::NotExists),
];

#[derive(Debug, Clone, PartialEq)]
pub enum ConditionalConfig {
    Branch { field: String, branches: Vec<String> },
    Rules { all: bool, conditions: Vec<Condition> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApplicationConfig {
    pub url: String,
    pub method: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<Value>,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeConfig {
    VoiceCall(VoiceCallConfig),
    Time(TimeConfig),
    Conditional(ConditionalConfig),
    Application(ApplicationConfig),
    Terminal { reason: Option<String> },
}

fn bad(message: impl Into<String>) -> Invalid {
    Invalid::new("config_invalid", message)
}

fn object(value: &Value) -> Result<&Map<String, Value>, Invalid> {
    value.as_object().ok_or_else(|| bad("config must be a JSON object"))
}

fn only_keys(map: &Map<String, Value>, allowed: &[&str]) -> Result<(), Invalid> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(bad(format!(
            "config.{key} is not a field of this node type (fields: {})",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn opt_string(map: &Map<String, Value>, key: &str) -> Result<Option<String>, Invalid> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(bad(format!("config.{key} must be a string"))),
    }
}

fn int_in(
    map: &Map<String, Value>,
    key: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, Invalid> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_u64().filter(|n| range.contains(n)).ok_or_else(|| {
            bad(format!(
                "config.{key} must be an integer from {} to {}",
                range.start(),
                range.end()
            ))
        }),
    }
}

impl NodeConfig {
    /// Parses `config` for `node_type`. Drafts may hold a VOICE_CALL without agent or number.
    pub fn parse(node_type: NodeType, config: &Value) -> Result<Self, Invalid> {
        if serde_json::to_vec(config).map(|v| v.len()).unwrap_or(0) > MAX_CONFIG_BYTES {
            return Err(bad("config exceeds the 64 KiB limit"));
        }
        let map = object(config)?;
        match node_type {
            NodeType::VoiceCall => parse_voice_call(map).map(Self::VoiceCall),
            NodeType::Time => parse_time(map).map(Self::Time),
            NodeType::Conditional => parse_conditional(map).map(Self::Conditional),
            NodeType::Application => parse_application(map).map(Self::Application),
            NodeType::Converted | NodeType::Dropped => {
                only_keys(map, &["reason"])?;
                Ok(Self::Terminal {
                    reason: opt_string(map, "reason")?,
                })
            }
        }
    }

    /// Every outcome the node can produce, each needing an edge (or a default edge) at activation.
    pub fn outcomes(&self) -> Vec<String> {
        match self {
            Self::VoiceCall(_) => CallOutcome::ALL.iter().map(|o| o.as_str().to_string()).collect(),
            Self::Time(_) => vec![String::new()],
            Self::Conditional(ConditionalConfig::Branch { branches, .. }) => branches.clone(),
            Self::Conditional(ConditionalConfig::Rules { .. }) => {
                vec!["true".into(), "false".into()]
            }
            Self::Application(_) => vec!["success".into(), "failure".into()],
            Self::Terminal { .. } => vec![],
        }
    }
}

fn parse_voice_call(map: &Map<String, Value>) -> Result<VoiceCallConfig, Invalid> {
    only_keys(
        map,
        &[
            "agent_id",
            "from_phone_number",
            "max_attempts",
            "retry_on",
            "retry_delay_minutes",
        ],
    )?;
    let retry_on = match map.get("retry_on") {
        None | Some(Value::Null) => vec![CallOutcome::NoAnswer, CallOutcome::Busy],
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for item in items {
                let outcome = item
                    .as_str()
                    .and_then(CallOutcome::parse_loose)
                    .filter(|o| *o != CallOutcome::Completed)
                    .ok_or_else(|| bad("config.retry_on entries must be NO_ANSWER, BUSY, VOICEMAIL or FAILED"))?;
                if !out.contains(&outcome) {
                    out.push(outcome);
                }
            }
            out
        }
        Some(_) => return Err(bad("config.retry_on must be a list of outcomes")),
    };
    Ok(VoiceCallConfig {
        agent_id: opt_string(map, "agent_id")?,
        from_phone_number: opt_string(map, "from_phone_number")?,
        max_attempts: int_in(map, "max_attempts", 1, 1..=10)? as u32,
        retry_on,
        retry_delay_minutes: int_in(map, "retry_delay_minutes", 60, 1..=10080)? as u32,
    })
}

fn positive_number(map: &Map<String, Value>, key: &str) -> Result<f64, Invalid> {
    map.get(key)
        .and_then(Value::as_f64)
        .filter(|n| *n > 0.0 && n.is_finite())
        .ok_or_else(|| bad(format!("config.{key} must be a number greater than 0")))
}

fn parse_time(map: &Map<String, Value>) -> Result<TimeConfig, Invalid> {
    only_keys(
        map,
        &[
            "delay_minutes",
            "delay_hours",
            "delay_days",
            "duration",
            "unit",
            "until_field",
        ],
    )?;
    let forms: Vec<&str> = ["delay_minutes", "delay_hours", "delay_days", "duration", "until_field"]
        .into_iter()
        .filter(|k| map.contains_key(*k))
        .collect();
    if forms.len() != 1 {
        return Err(bad(
            "config must have exactly one of delay_minutes, delay_hours, delay_days, duration (with unit) or until_field",
        ));
    }
    if forms[0] != "duration" && map.contains_key("unit") {
        return Err(bad("config.unit is only allowed with config.duration"));
    }
    let minutes = match forms[0] {
        "until_field" => {
            let field =
                opt_string(map, "until_field")?.ok_or_else(|| bad("config.until_field must name a data path"))?;
            return Ok(TimeConfig::Until { field });
        }
        "delay_minutes" => positive_number(map, "delay_minutes")?,
        "delay_hours" => positive_number(map, "delay_hours")? * 60.0,
        "delay_days" => positive_number(map, "delay_days")? * 1440.0,
        _ => {
            let n = positive_number(map, "duration")?;
            match map.get("unit").and_then(Value::as_str) {
                Some("minutes") => n,
                Some("hours") => n * 60.0,
                Some("days") => n * 1440.0,
                _ => {
                    return Err(bad("config.unit must be \"minutes\", \"hours\" or \"days\""));
                }
            }
        }
    };
    let ms = minutes * MINUTE_MS;
    if ms > MAX_DELAY_MS {
        return Err(bad("config: a TIME delay is at most 365 days"));
    }
    Ok(TimeConfig::Delay { ms: ms.round() as i64 })
}

fn parse_conditional(map: &Map<String, Value>) -> Result<ConditionalConfig, Invalid> {
    if map.contains_key("condition_field") || map.contains_key("branches") {
        only_keys(map, &["condition_field", "branches"])?;
        let field = opt_string(map, "condition_field")?.ok_or_else(|| bad("config.condition_field is required"))?;
        let branches: Vec<String> = match map.get("branches") {
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|v| v.as_str().map(str::trim).filter(|s| !s.is_empty()).map(String::from))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("config.branches must be non-empty strings"))?,
            _ => return Err(bad("config.branches must be a non-empty list of strings")),
        };
        return Ok(ConditionalConfig::Branch { field, branches });
    }
    only_keys(map, &["logic", "conditions"])?;
    let all = match map.get("logic").and_then(Value::as_str) {
        None => true,
        Some(l) if l.eq_ignore_ascii_case("and") => true,
        Some(l) if l.eq_ignore_ascii_case("or") => false,
        Some(_) => return Err(bad("config.logic must be \"AND\" or \"OR\"")),
    };
    let items = match map.get("conditions") {
        Some(Value::Array(items)) if (1..=20).contains(&items.len()) => items,
        _ => {
            return Err(bad(
                "config needs either condition_field + branches, or conditions (a list of 1 to 20 rules)",
            ));
        }
    };
    let mut conditions = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let rule = item
            .as_object()
            .ok_or_else(|| bad(format!("config.conditions[{i}] must be an object")))?;
        if let Some(key) = rule
            .keys()
            .find(|k| !["field", "operator", "value"].contains(&k.as_str()))
        {
            return Err(bad(format!(
                "config.conditions[{i}].{key} is not a field of a condition"
            )));
        }
        let field = rule
            .get("field")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(format!("config.conditions[{i}].field is required")))?;
        let op_name = rule.get("operator").and_then(Value::as_str).unwrap_or("");
        let operator = OPERATORS
            .iter()
            .find(|(n, _)| *n == op_name)
            .map(|(_, o)| *o)
            .ok_or_else(|| {
                let names: Vec<&str> = OPERATORS.iter().map(|(n, _)| *n).collect();
                bad(format!(
                    "config.conditions[{i}].operator must be one of: {}",
                    names.join(", ")
                ))
            })?;
        let value = rule.get("value").filter(|v| !v.is_null()).cloned();
        if value.is_none() && !matches!(operator, Operator::Exists | Operator::NotExists) {
            return Err(bad(format!(
                "config.conditions[{i}].value is required for operator {op_name}"
            )));
        }
        conditions.push(Condition {
            field: field.to_string(),
            operator,
            value,
        });
    }
    Ok(ConditionalConfig::Rules { all, conditions })
}

fn parse_application(map: &Map<String, Value>) -> Result<ApplicationConfig, Invalid> {
    only_keys(map, &["action", "url", "method", "headers", "body", "timeout_ms"])?;
    match map.get("action").and_then(Value::as_str) {
        Some("webhook") | None => {}
        Some(other) => {
            return Err(bad(format!(
                "config.action \"{other}\" is not supported (supported: webhook)"
            )));
        }
    }
    let url = opt_string(map, "url")?.ok_or_else(|| bad("config.url is required"))?;
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
        return Err(bad("config.url must be an absolute http:// or https:// URL"));
    }
    let method = opt_string(map, "method")?
        .unwrap_or_else(|| "POST".into())
        .to_ascii_uppercase();
    if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
        return Err(bad("config.method must be GET, POST, PUT, PATCH or DELETE"));
    }
    let headers = match map.get("headers") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(h)) => h
            .iter()
            .map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("config.headers values must be strings"))?,
        Some(_) => return Err(bad("config.headers must be an object of strings")),
    };
    Ok(ApplicationConfig {
        url,
        method,
        headers,
        body: map.get("body").filter(|v| !v.is_null()).cloned(),
        timeout_ms: int_in(map, "timeout_ms", 10_000, 100..=60_000)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn time_forms() {
        let p = |v| NodeConfig::parse(NodeType::Time, &v);
        assert_eq!(
            p(json!({"delay_minutes": 1.5})).unwrap(),
            NodeConfig::Time(TimeConfig::Delay { ms: 90_000 })
        );
        assert_eq!(
            p(json!({"duration": 2, "unit": "days"})).unwrap(),
            NodeConfig::Time(TimeConfig::Delay { ms: 2 * 86_400_000 })
        );
        assert!(p(json!({"delay_minutes": 0})).is_err());
        assert!(p(json!({"delay_minutes": 1, "delay_hours": 1})).is_err());
        assert!(p(json!({"delay_days": 366})).is_err());
        assert!(p(json!({})).is_err());
    }

    #[test]
    fn voice_call_defaults_and_limits() {
        let NodeConfig::VoiceCall(c) = NodeConfig::parse(NodeType::VoiceCall, &json!({})).unwrap() else {
            panic!()
        };
        assert_eq!((c.max_attempts, c.retry_delay_minutes), (1, 60));
        assert_eq!(c.retry_on, vec![CallOutcome::NoAnswer, CallOutcome::Busy]);
        let err = NodeConfig::parse(NodeType::VoiceCall, &json!({"max_attempts": 11})).unwrap_err();
        assert!(err.message.contains("max_attempts"));
        let err = NodeConfig::parse(NodeType::VoiceCall, &json!({"retry_on": ["COMPLETED"]})).unwrap_err();
        assert!(err.message.contains("retry_on"));
    }

    #[test]
    fn conditional_forms() {
        let c = NodeConfig::parse(
            NodeType::Conditional,
            &json!({"condition_field": "call_status", "branches": ["COMPLETED"]}),
        );
        assert!(c.is_ok());
        let c = NodeConfig::parse(
            NodeType::Conditional,
            &json!({"logic": "OR", "conditions": [{"field": "lead.x", "operator": "bogus", "value": 1}]}),
        );
        assert!(c.unwrap_err().message.contains("operator"));
    }

    #[test]
    fn application_requires_url() {
        let err = NodeConfig::parse(NodeType::Application, &json!({"action": "webhook"})).unwrap_err();
        assert!(err.message.contains("url"));
        let err = NodeConfig::parse(
            NodeType::Application,
            &json!({"action": "email", "url": "https://x.example"}),
        )
        .unwrap_err();
        assert!(err.message.contains("action"));
    }
}
