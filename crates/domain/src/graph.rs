//! A workflow graph: entry resolution, routing (API.md section 4) and the activation checks (section 2).

use crate::config::NodeConfig;
use crate::model::NodeType;
use serde::Serialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};

#[derive(Debug, Clone)]
pub struct NodeDef {
    pub id: String,
    pub node_type: NodeType,
    pub label: String,
    pub config: Value,
}

#[derive(Debug, Clone)]
pub struct EdgeDef {
    pub id: String,
    pub from_node_id: String,
    pub to_node_id: String,
    /// `None` (or empty) is the default edge.
    pub label: Option<String>,
}

impl EdgeDef {
    fn label(&self) -> &str {
        self.label.as_deref().map(str::trim).unwrap_or("")
    }
}

/// Nodes and edges in creation order.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub nodes: Vec<NodeDef>,
    pub edges: Vec<EdgeDef>,
    pub entry_node_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge_id: Option<String>,
}

impl Problem {
    fn new(code: &'static str, message: impl Into<String>, node_id: Option<&str>) -> Self {
        Self {
            code,
            message: message.into(),
            node_id: node_id.map(String::from),
            edge_id: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub valid: bool,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

/// What the activation checks need to know outside the graph.
#[derive(Debug, Default)]
pub struct Directory {
    /// Agent id → the `{{variables}}` its prompt and welcome message use.
    pub agents: HashMap<String, Vec<String>>,
    /// E.164 numbers that are active phone numbers of the organization.
    pub active_numbers: HashSet<String>,
    /// Variable keys enrolled so far (`None`: no lead uploaded yet, so nothing to warn about).
    pub known_variables: Option<HashSet<String>>,
}

/// Whether an edge label takes this outcome, by the precedence of API.md section 4
/// (0 = exact label, 1 = `DNP`, 2 = default), or `None`.
fn match_rank(label: &str, outcome: &str) -> Option<u8> {
    if label.is_empty() {
        return Some(2);
    }
    if !outcome.is_empty() && label.eq_ignore_ascii_case(outcome) {
        return Some(0);
    }
    let dnp_outcome = ["NO_ANSWER", "BUSY", "VOICEMAIL"]
        .iter()
        .any(|o| o.eq_ignore_ascii_case(outcome));
    (label.eq_ignore_ascii_case("DNP") && dnp_outcome).then_some(1)
}

impl Graph {
    pub fn node(&self, id: &str) -> Option<&NodeDef> {
        self.nodes.iter().find(|n| n.id == id)
    }

    pub fn edges_from<'a>(&'a self, node_id: &'a str) -> impl Iterator<Item = &'a EdgeDef> + 'a {
        self.edges.iter().filter(move |e| e.from_node_id == node_id)
    }

    /// The edge a node's outcome takes: exact label, then `DNP`, then default; oldest first.
    pub fn route<'a>(&'a self, node_id: &str, outcome: &str) -> Option<&'a EdgeDef> {
        self.edges
            .iter()
            .filter(|e| e.from_node_id == node_id)
            .filter_map(|e| match_rank(e.label(), outcome).map(|rank| (rank, e)))
            .min_by_key(|(rank, _)| *rank)
            .map(|(_, e)| e)
    }

    /// The node where leads start.
    pub fn entry(&self) -> Result<&NodeDef, Problem> {
        if self.nodes.is_empty() {
            return Err(Problem::new("no_nodes", "the workflow has no nodes", None));
        }
        if let Some(id) = &self.entry_node_id {
            return self.node(id).ok_or_else(|| {
                Problem::new(
                    "entry_missing",
                    format!("entry_node_id {id} is not a node of this workflow"),
                    None,
                )
            });
        }
        let targets: HashSet<&str> = self.edges.iter().map(|e| e.to_node_id.as_str()).collect();
        let roots: Vec<&NodeDef> = self.nodes.iter().filter(|n| !targets.contains(n.id.as_str())).collect();
        match roots.as_slice() {
            [one] => Ok(one),
            [] => Err(Problem::new(
                "entry_missing",
                "every node has an incoming edge, so there is no entry node; set entry_node_id",
                None,
            )),
            many => Err(Problem::new(
                "entry_ambiguous",
                format!(
                    "{} nodes have no incoming edge ({}); set entry_node_id or connect them",
                    many.len(),
                    many.iter().map(|n| n.id.as_str()).collect::<Vec<_>>().join(", ")
                ),
                None,
            )),
        }
    }

    /// The activation checks: errors block activation, warnings do not.
    pub fn check(&self, directory: &Directory) -> Report {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let entry = match self.entry() {
            Ok(entry) => Some(entry.id.clone()),
            Err(problem) => {
                errors.push(problem);
                None
            }
        };
        if let Some(entry) = &entry {
            let reached = self.reachable_from(entry);
            for node in self.nodes.iter().filter(|n| !reached.contains(n.id.as_str())) {
                errors.push(Problem::new(
                    "unreachable_node",
                    format!("node {} is not reachable from the entry node", node.id),
                    Some(&node.id),
                ));
            }
        }
        for node in &self.nodes {
            self.check_node(node, directory, &mut errors, &mut warnings);
        }
        if let Some(node_id) = self.instant_cycle_member() {
            errors.push(Problem::new(
                "instant_cycle",
                format!("node {node_id} is on a cycle with no VOICE_CALL or TIME node; leads would loop forever"),
                Some(&node_id),
            ));
        }
        Report {
            valid: errors.is_empty(),
            errors,
            warnings,
        }
    }

    fn check_node(
        &self,
        node: &NodeDef,
        directory: &Directory,
        errors: &mut Vec<Problem>,
        warnings: &mut Vec<Problem>,
    ) {
        let id = Some(node.id.as_str());
        let has_edges = self.edges_from(&node.id).next().is_some();
        if node.node_type.is_terminal() {
            if has_edges {
                errors.push(Problem::new(
                    "terminal_has_edges",
                    format!("{} node {} must not have outgoing edges", node.node_type, node.id),
                    id,
                ));
            }
        } else if !has_edges {
            errors.push(Problem::new(
                "dead_end",
                format!("node {} has no outgoing edge", node.id),
                id,
            ));
        }
        let config = match NodeConfig::parse(node.node_type, &node.config) {
            Ok(config) => config,
            Err(e) => {
                errors.push(Problem::new(
                    "config_invalid",
                    format!("node {}: {}", node.id, e.message),
                    id,
                ));
                return;
            }
        };
        if has_edges {
            for outcome in config.outcomes() {
                if self.route(&node.id, &outcome).is_none() {
                    let shown = if outcome.is_empty() {
                        "its unlabelled edge".to_string()
                    } else {
                        format!("outcome {outcome}")
                    };
                    errors.push(Problem::new(
                        "uncovered_outcome",
                        format!("node {}: no edge takes {shown} and there is no default edge", node.id),
                        id,
                    ));
                }
            }
        }
        if let NodeConfig::VoiceCall(call) = &config {
            match &call.agent_id {
                None => errors.push(Problem::new(
                    "config_invalid",
                    format!("node {}: config.agent_id is required", node.id),
                    id,
                )),
                Some(agent) => {
                    match directory.agents.get(agent) {
                        None => errors.push(Problem::new(
                            "config_invalid",
                            format!("node {}: agent {agent} does not exist", node.id),
                            id,
                        )),
                        Some(vars) => {
                            if let Some(known) = &directory.known_variables {
                                for var in vars
                                    .iter()
                                    .filter(|v| !known.contains(*v) && v.as_str() != "phone_number")
                                {
                                    warnings.push(Problem::new(
                                    "unknown_variable",
                                    format!("node {}: agent variable {{{{{var}}}}} is not provided by any enrolled column", node.id),
                                    id,
                                ));
                                }
                            }
                        }
                    }
                }
            }
            match &call.from_phone_number {
                None => errors.push(Problem::new(
                    "config_invalid",
                    format!("node {}: config.from_phone_number is required", node.id),
                    id,
                )),
                Some(number) if !directory.active_numbers.contains(number) => errors.push(Problem::new(
                    "config_invalid",
                    format!(
                        "node {}: {number} is not an active phone number of this organization",
                        node.id
                    ),
                    id,
                )),
                Some(_) => {}
            }
        }
    }

    fn reachable_from<'a>(&'a self, start: &'a str) -> HashSet<&'a str> {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut queue = VecDeque::from([start]);
        while let Some(id) = queue.pop_front() {
            if seen.insert(id) {
                queue.extend(self.edges_from(id).map(|e| e.to_node_id.as_str()));
            }
        }
        seen
    }

    /// A node on a cycle made only of instant nodes (no VOICE_CALL, no TIME), if any.
    fn instant_cycle_member(&self) -> Option<String> {
        let instant: HashSet<&str> = self
            .nodes
            .iter()
            .filter(|n| !matches!(n.node_type, NodeType::VoiceCall | NodeType::Time))
            .map(|n| n.id.as_str())
            .collect();
        let edges: Vec<(&str, &str)> = self
            .edges
            .iter()
            .filter(|e| instant.contains(e.from_node_id.as_str()) && instant.contains(e.to_node_id.as_str()))
            .map(|e| (e.from_node_id.as_str(), e.to_node_id.as_str()))
            .collect();
        // Peel nodes without incoming, then without outgoing, edges: what remains lies on a cycle.
        let mut alive = instant;
        loop {
            let before = alive.len();
            let has_in: HashSet<&str> = edges
                .iter()
                .filter(|(f, t)| alive.contains(f) && alive.contains(t))
                .map(|e| e.1)
                .collect();
            let has_out: HashSet<&str> = edges
                .iter()
                .filter(|(f, t)| alive.contains(f) && alive.contains(t))
                .map(|e| e.0)
                .collect();
            alive.retain(|n| has_in.contains(n) && has_out.contains(n));
            if alive.len() == before {
                break;
            }
        }
        self.nodes
            .iter()
            .find(|n| alive.contains(n.id.as_str()))
            .map(|n| n.id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(id: &str, t: NodeType, config: Value) -> NodeDef {
        NodeDef {
            id: id.into(),
            node_type: t,
            label: id.into(),
            config,
        }
    }

    fn edge(id: &str, from: &str, to: &str, label: Option<&str>) -> EdgeDef {
        EdgeDef {
            id: id.into(),
            from_node_id: from.into(),
            to_node_id: to.into(),
            label: label.map(String::from),
        }
    }

    #[test]
    fn routing_prefers_exact_then_dnp_then_default_oldest_first() {
        let g = Graph {
            nodes: vec![],
            edges: vec![
                edge("e1", "a", "x", None),
                edge("e2", "a", "y", Some("dnp")),
                edge("e3", "a", "z", Some("busy")),
                edge("e4", "a", "w", Some("BUSY")),
                edge("e5", "a", "v", Some("")),
            ],
            entry_node_id: None,
        };
        assert_eq!(g.route("a", "BUSY").unwrap().id, "e3");
        assert_eq!(g.route("a", "NO_ANSWER").unwrap().id, "e2");
        assert_eq!(g.route("a", "COMPLETED").unwrap().id, "e1");
        assert!(g.route("b", "COMPLETED").is_none());
    }

    #[test]
    fn checks_report_graph_problems() {
        let g = Graph {
            nodes: vec![
                node(
                    "c",
                    NodeType::Conditional,
                    json!({"logic": "AND", "conditions": [{"field": "x", "operator": "exists"}]}),
                ),
                node(
                    "d",
                    NodeType::Conditional,
                    json!({"logic": "AND", "conditions": [{"field": "x", "operator": "exists"}]}),
                ),
                node("t", NodeType::Converted, json!({})),
                node("lonely", NodeType::Dropped, json!({})),
            ],
            edges: vec![
                edge("e1", "c", "d", Some("true")),
                edge("e2", "d", "c", None),
                edge("e3", "c", "t", Some("false")),
                edge("e4", "t", "d", None),
            ],
            entry_node_id: Some("c".into()),
        };
        let report = g.check(&Directory::default());
        let codes: Vec<&str> = report.errors.iter().map(|e| e.code).collect();
        assert!(codes.contains(&"unreachable_node"), "{codes:?}");
        assert!(codes.contains(&"terminal_has_edges"), "{codes:?}");
        assert!(codes.contains(&"instant_cycle"), "{codes:?}");
        assert!(!report.valid);
    }

    #[test]
    fn entry_rules() {
        let mut g = Graph {
            nodes: vec![
                node("a", NodeType::Converted, json!({})),
                node("b", NodeType::Dropped, json!({})),
            ],
            ..Default::default()
        };
        assert_eq!(g.entry().unwrap_err().code, "entry_ambiguous");
        g.entry_node_id = Some("b".into());
        assert_eq!(g.entry().unwrap().id, "b");
        assert_eq!(Graph::default().entry().unwrap_err().code, "no_nodes");
    }
}
