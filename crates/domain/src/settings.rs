//! Workflow `settings`: parsed and validated as a whole, merged key by key on PATCH.

use crate::Invalid;
use crate::model::Reenrollment;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

const KEYS: &[&str] = &[
    "timezone",
    "default_country",
    "max_concurrent_calls",
    "calling_hours",
    "auto_complete",
    "reenrollment",
];
pub const DAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Days and a daily window (`HH:MM`, 24-hour, `start` < `end`) in the lead's local time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallingHours {
    pub days: Vec<String>,
    pub start: String,
    pub end: String,
}

impl CallingHours {
    /// Minutes after midnight of `start` and `end`.
    pub fn window_minutes(&self) -> (u32, u32) {
        (parse_hhmm(&self.start).unwrap_or(0), parse_hhmm(&self.end).unwrap_or(0))
    }

    /// Monday = 0 .. Sunday = 6.
    pub fn day_indexes(&self) -> Vec<usize> {
        self.days
            .iter()
            .filter_map(|d| DAYS.iter().position(|x| x == d))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkflowSettings {
    pub timezone: String,
    pub default_country: Option<String>,
    pub max_concurrent_calls: u32,
    pub calling_hours: Option<CallingHours>,
    pub auto_complete: bool,
    pub reenrollment: Reenrollment,
}

impl Default for WorkflowSettings {
    fn default() -> Self {
        Self {
            timezone: "UTC".into(),
            default_country: None,
            max_concurrent_calls: 10,
            calling_hours: None,
            auto_complete: true,
            reenrollment: Reenrollment::Never,
        }
    }
}

fn invalid(message: impl Into<String>) -> Invalid {
    Invalid::new("validation_failed", message)
}

fn parse_hhmm(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// Checks an IANA zone name against the bundled database.
pub fn is_valid_timezone(name: &str) -> bool {
    !name.is_empty() && jiff::tz::TimeZone::get(name).is_ok()
}

/// Checks an ISO 3166 alpha-2 code that the phone library knows.
pub fn parse_country(code: &str) -> Option<String> {
    let upper = code.trim().to_ascii_uppercase();
    (upper.len() == 2 && upper.parse::<phonenumber::country::Id>().is_ok()).then_some(upper)
}

impl WorkflowSettings {
    /// Applies `patch` (a JSON object) on top of `self`, key by key, and validates the result.
    pub fn merged(&self, patch: &Value) -> Result<Self, Invalid> {
        let Value::Object(patch) = patch else {
            return Err(invalid("settings must be an object"));
        };
        let mut fields = match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        for (key, value) in patch {
            if !KEYS.contains(&key.as_str()) {
                return Err(invalid(format!(
                    "settings.{key} is not a known setting (known: {})",
                    KEYS.join(", ")
                )));
            }
            fields.insert(key.clone(), value.clone());
        }
        Self::from_fields(&fields)
    }

    fn from_fields(f: &Map<String, Value>) -> Result<Self, Invalid> {
        let timezone = match f.get("timezone") {
            Some(Value::String(tz)) if is_valid_timezone(tz) => tz.clone(),
            _ => {
                return Err(invalid(
                    "settings.timezone must be an IANA time zone name such as \"Asia/Kolkata\"",
                ));
            }
        };
        let default_country = match f.get("default_country") {
            None | Some(Value::Null) => None,
            Some(Value::String(c)) => Some(parse_country(c).ok_or_else(|| {
                invalid("settings.default_country must be an ISO 3166 alpha-2 country code such as \"IN\"")
            })?),
            Some(_) => return Err(invalid("settings.default_country must be a string or null")),
        };
        let max_concurrent_calls = match f.get("max_concurrent_calls").and_then(Value::as_u64) {
            Some(n @ 1..=1000) => n as u32,
            _ => {
                return Err(invalid(
                    "settings.max_concurrent_calls must be an integer from 1 to 1000",
                ));
            }
        };
        let calling_hours = match f.get("calling_hours") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_calling_hours(v)?),
        };
        let auto_complete = match f.get("auto_complete") {
            Some(Value::Bool(b)) => *b,
            _ => return Err(invalid("settings.auto_complete must be a boolean")),
        };
        let reenrollment = match f
            .get("reenrollment")
            .and_then(Value::as_str)
            .and_then(Reenrollment::parse)
        {
            Some(r) => r,
            None => {
                return Err(invalid(format!(
                    "settings.reenrollment must be one of: {}",
                    Reenrollment::names()
                )));
            }
        };
        Ok(Self {
            timezone,
            default_country,
            max_concurrent_calls,
            calling_hours,
            auto_complete,
            reenrollment,
        })
    }
}

fn parse_calling_hours(value: &Value) -> Result<CallingHours, Invalid> {
    let hours: CallingHours = serde_json::from_value(value.clone()).map_err(|_| {
        invalid("settings.calling_hours must be null or {\"days\": [\"mon\", ...], \"start\": \"HH:MM\", \"end\": \"HH:MM\"}")
    })?;
    if hours.days.is_empty() {
        return Err(invalid("settings.calling_hours.days must name at least one day"));
    }
    if let Some(bad) = hours.days.iter().find(|d| !DAYS.contains(&d.as_str())) {
        return Err(invalid(format!(
            "settings.calling_hours.days: \"{bad}\" is not one of {}",
            DAYS.join(", ")
        )));
    }
    let (Some(start), Some(end)) = (parse_hhmm(&hours.start), parse_hhmm(&hours.end)) else {
        return Err(invalid(
            "settings.calling_hours.start and end must be \"HH:MM\" (24-hour)",
        ));
    };
    if start >= end {
        return Err(invalid(
            "settings.calling_hours.start must be before end (windows across midnight are not supported)",
        ));
    }
    Ok(hours)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_key_by_key() {
        let s = WorkflowSettings::default()
            .merged(&json!({"timezone": "Asia/Kolkata"}))
            .unwrap();
        assert_eq!(s.timezone, "Asia/Kolkata");
        assert_eq!(s.max_concurrent_calls, 10);
        let s = s
            .merged(&json!({"max_concurrent_calls": 3, "default_country": "in"}))
            .unwrap();
        assert_eq!(s.timezone, "Asia/Kolkata");
        assert_eq!(s.default_country.as_deref(), Some("IN"));
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        let base = WorkflowSettings::default();
        for (patch, field) in [
            (json!({"timezone": "Mars/Base"}), "timezone"),
            (json!({"max_concurrent_calls": 0}), "max_concurrent_calls"),
            (
                json!({"calling_hours": {"days": ["mon"], "start": "18:00", "end": "09:00"}}),
                "start",
            ),
            (json!({"colour": 1}), "colour"),
        ] {
            let err = base.merged(&patch).unwrap_err();
            assert!(err.message.contains(field), "{}", err.message);
        }
    }
}
