//! The activation checks over a workflow snapshot, shared by `validate`, `activate` and every backend.

use crate::engine::WorkflowSnapshot;
use crate::records::Agent;
use switchboard_domain::graph::{Directory, Problem, Report};

fn template_variables(text: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text.unwrap_or("");
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        out.push(rest[start + 2..start + 2 + len].trim().to_string());
        rest = &rest[start + 2 + len + 2..];
    }
    out
}

/// Minimum weekly calling time below which activation warns.
const MIN_WEEKLY_CALLING_MINUTES: u32 = 120;

/// Runs the graph checks with the organization's agents and numbers, plus the settings warnings.
/// `variable_keys` only produce warnings once the workflow has leads.
pub fn activation_report(
    snapshot: &WorkflowSnapshot,
    agents: &[Agent],
    variable_keys: &[String],
    has_leads: bool,
) -> Report {
    let directory = Directory {
        agents: agents
            .iter()
            .map(|a| {
                let mut vars = template_variables(a.prompt.as_deref());
                vars.extend(template_variables(a.welcome_message.as_deref()));
                vars.sort();
                vars.dedup();
                (a.id.clone(), vars)
            })
            .collect(),
        active_numbers: snapshot.numbers.iter().cloned().collect(),
        known_variables: has_leads.then(|| variable_keys.iter().cloned().collect()),
    };
    let mut report = snapshot.graph.check(&directory);
    if let Some(hours) = &snapshot.settings.calling_hours {
        let (start, end) = hours.window_minutes();
        let weekly = (end - start) * hours.day_indexes().len() as u32;
        if weekly < MIN_WEEKLY_CALLING_MINUTES {
            report.warnings.push(Problem {
                code: "calling_hours_short",
                message: format!("calling hours leave only {weekly} minutes a week"),
                node_id: None,
                edge_id: None,
            });
        }
    }
    report
}
