//! The deterministic call simulator (API.md section 8): outcomes come from the lead's variables.

use crate::model::CallOutcome;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub const DEFAULT_TALK_SECONDS: u32 = 30;

/// Outcome of the lead's `call_number`-th call (1-based) in the workflow.
pub fn outcome(variables: &Map<String, Value>, lead_id: &str, call_number: u32) -> CallOutcome {
    let listed: Vec<CallOutcome> = variables
        .get("sim_outcome")
        .and_then(Value::as_str)
        .map(|s| s.split(',').filter_map(CallOutcome::parse_loose).collect())
        .unwrap_or_default();
    if let Some(last) = listed.last() {
        let index = (call_number.max(1) as usize - 1).min(listed.len() - 1);
        return *listed.get(index).unwrap_or(last);
    }
    // Without `sim_outcome`: a fixed distribution, drawn by a hash so it is repeatable.
    let digest = Sha256::digest(format!("{lead_id}:{call_number}").as_bytes());
    match u16::from_be_bytes([digest[0], digest[1]]) % 100 {
        0..60 => CallOutcome::Completed,
        60..85 => CallOutcome::NoAnswer,
        85..95 => CallOutcome::Busy,
        _ => CallOutcome::Voicemail,
    }
}

/// `sim_analysis` (`key=value;key=value`) as the call's `analysis` object.
pub fn analysis(variables: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(text) = variables.get("sim_analysis").and_then(Value::as_str) {
        for pair in text.split(';') {
            if let Some((k, v)) = pair.split_once('=')
                && !k.trim().is_empty()
            {
                out.insert(k.trim().to_string(), Value::String(v.trim().to_string()));
            }
        }
    }
    out
}

/// Talk time of a completed call, in (unscaled) seconds.
pub fn talk_seconds(variables: &Map<String, Value>) -> u32 {
    variables
        .get("sim_duration_seconds")
        .and_then(|v| {
            v.as_str()
                .and_then(|s| s.trim().parse::<f64>().ok())
                .or_else(|| v.as_f64())
        })
        .filter(|n| n.is_finite() && *n >= 0.0)
        .map(|n| n.min(86_400.0) as u32)
        .unwrap_or(DEFAULT_TALK_SECONDS)
}

pub fn end_reason(outcome: CallOutcome) -> &'static str {
    match outcome {
        CallOutcome::Completed => "user_disconnected",
        CallOutcome::NoAnswer => "no_answer",
        CallOutcome::Busy => "line_busy",
        CallOutcome::Voicemail => "voicemail_reached",
        CallOutcome::Failed => "dial_failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn listed_outcomes_repeat_the_last() {
        let vars = json!({"sim_outcome": "NO_ANSWER, busy"}).as_object().unwrap().clone();
        let got: Vec<_> = (1..=4).map(|n| outcome(&vars, "wlead_x", n)).collect();
        assert_eq!(
            got,
            [
                CallOutcome::NoAnswer,
                CallOutcome::Busy,
                CallOutcome::Busy,
                CallOutcome::Busy
            ]
        );
    }

    #[test]
    fn unlisted_outcomes_are_repeatable() {
        let vars = Map::new();
        for n in 1..20 {
            assert_eq!(outcome(&vars, "wlead_abc", n), outcome(&vars, "wlead_abc", n));
        }
        let completed = (0..1000)
            .filter(|i| outcome(&vars, &format!("wlead_{i}"), 1) == CallOutcome::Completed)
            .count();
        assert!((500..700).contains(&completed), "{completed}");
    }

    #[test]
    fn analysis_and_duration() {
        let vars = json!({"sim_analysis": "interest=yes; budget=250000", "sim_duration_seconds": "74"})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(
            Value::Object(analysis(&vars)),
            json!({"interest": "yes", "budget": "250000"})
        );
        assert_eq!(talk_seconds(&vars), 74);
        assert_eq!(talk_seconds(&Map::new()), 30);
    }
}
