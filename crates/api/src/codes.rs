//! The one table of error codes: every `code` an error body can carry, its HTTP status and what it means.
//! `docs/errors.md` is generated from it (see the test below).

pub struct CodeInfo {
    pub code: &'static str,
    pub status: u16,
    pub meaning: &'static str,
}

macro_rules! codes {
    ($($code:literal => $status:literal, $meaning:literal;)+) => {
        pub const ERROR_CODES: &[CodeInfo] = &[$(CodeInfo { code: $code, status: $status, meaning: $meaning }),+];
    };
}

codes! {
    "validation_failed" => 400, "A field is missing or invalid; the message names it.";
    "unknown_field" => 400, "The body (or form) has a field the endpoint does not take.";
    "invalid_json" => 400, "The body is not a JSON object.";
    "invalid_multipart" => 400, "The multipart body could not be read.";
    "invalid_node_type" => 400, "node_type is not one of the six node types.";
    "node_type_immutable" => 400, "A PATCH tried to change a node's type.";
    "config_invalid" => 400, "A node config does not meet its type's schema; the message names the field.";
    "terminal_has_edges" => 400, "An edge would leave a CONVERTED or DROPPED node.";
    "limit_exceeded" => 400, "A workflow would exceed 500 nodes or 2,000 edges.";
    "activate_separately" => 400, "A workflow was created with a status other than draft.";
    "graph_invalid" => 400, "Activation checks failed; details.errors lists the problems.";
    "invalid_rows" => 400, "Lead rows failed their checks; details.groups lists them by reason. Nothing was enrolled.";
    "invalid_header" => 400, "A lead file's header is unusable (no phone column, a duplicate or empty header over values).";
    "invalid_file" => 400, "A lead file is neither UTF-8 CSV nor XLSX.";
    "too_many_rows" => 400, "A lead file has more than 1,000,000 rows.";
    "unauthorized" => 401, "The API key is missing, malformed, unknown or revoked.";
    "not_found" => 404, "The object does not exist (or belongs to another organization).";
    "route_not_found" => 404, "No such route.";
    "method_not_allowed" => 405, "The route exists but not with this method.";
    "status_not_patchable" => 409, "A PATCH tried to change a workflow's status; use the lifecycle actions.";
    "workflow_not_draft" => 409, "Activation of a workflow that is not a draft.";
    "workflow_not_active" => 409, "Pause of a workflow that is not active.";
    "workflow_not_paused" => 409, "Resume of a workflow that is not paused.";
    "workflow_final" => 409, "The workflow is completed or cancelled: it can only be read, duplicated and deleted.";
    "workflow_active" => 409, "Deletion of an active or paused workflow; cancel it first.";
    "entry_missing" => 409, "Leads cannot start: the live workflow has no entry node.";
    "entry_ambiguous" => 409, "Leads cannot start: the live workflow has several candidate entry nodes.";
    "entry_node" => 409, "Deletion of the entry node of a live workflow; move entry_node_id first.";
    "node_has_leads" => 409, "Leads stand on the node; pass reassign_to or remove_leads (details.lead_count).";
    "workflow_changed" => 409, "The workflow's status changed while an upload ran; nothing was enrolled.";
    "edge_exists" => 409, "An edge with the same from, to and label exists.";
    "lead_final" => 409, "The lead is already in a final status.";
    "duplicate_lead" => 409, "The number is already enrolled in the workflow (single-lead enrolment).";
    "agent_in_use" => 409, "A VOICE_CALL node of a non-final workflow uses the agent.";
    "phone_number_in_use" => 409, "A VOICE_CALL node of a non-final workflow calls from the number.";
    "phone_number_exists" => 409, "The organization already has this phone number.";
    "idempotency_key_in_use" => 409, "A request with the same Idempotency-Key is still running.";
    "payload_too_large" => 413, "The body exceeds 1 MiB (50 MiB for lead uploads).";
    "unsupported_media_type" => 415, "The Content-Type is not one the endpoint accepts.";
    "idempotency_key_reused" => 422, "The Idempotency-Key was used before with a different method, path or body.";
    "rate_limited" => 429, "Too many requests for this API key; see Retry-After.";
    "internal_error" => 500, "An unexpected failure; it is logged with the request_id.";
    "not_ready" => 503, "The database is not reachable.";
}

pub fn lookup(code: &str) -> Option<&'static CodeInfo> {
    ERROR_CODES.iter().find(|c| c.code == code)
}

/// `docs/errors.md`, rendered from the table.
pub fn render_markdown() -> String {
    let mut out = String::from(
        "# Error codes\n\nGenerated from `crates/api/src/codes.rs` by `cargo test -p switchboard-api` \
         (set `UPDATE_DOCS=1` to rewrite it). Every 4xx/5xx body is\n\
         `{\"statusCode\", \"error\", \"message\", \"code\", \"request_id\", \"details\"}`; `code` is one of:\n\n\
         | code | status | meaning |\n|---|---|---|\n",
    );
    for c in ERROR_CODES {
        out.push_str(&format!("| `{}` | {} | {} |\n", c.code, c.status, c.meaning));
    }
    out.push_str(
        "\nActivation problems (`details.errors` of `graph_invalid`, and `errors`/`warnings` of `validate`) carry their \
         own codes: `no_nodes`, `entry_missing`, `entry_ambiguous`, `unreachable_node`, `dead_end`, \
         `uncovered_outcome`, `terminal_has_edges`, `config_invalid`, `instant_cycle`; warnings `unknown_variable` \
         and `calling_hours_short`.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn docs_match_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/errors.md");
        let rendered = super::render_markdown();
        if std::env::var("UPDATE_DOCS").is_ok() {
            std::fs::write(path, &rendered).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == rendered,
            "docs/errors.md is stale: run UPDATE_DOCS=1 cargo test -p switchboard-api"
        );
    }

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for c in super::ERROR_CODES {
            assert!(seen.insert(c.code), "{} twice", c.code);
            assert!(
                c.code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                c.code
            );
        }
    }
}
