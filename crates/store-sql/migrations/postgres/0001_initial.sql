-- PostgreSQL schema: the same tables as SQLite's. Instants are Unix milliseconds; JSON is stored as text;
-- `rowid` gives the insertion order SQLite's implicit rowid gives.

CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations(id),
    name TEXT,
    secret_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE agents (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations(id),
    name TEXT NOT NULL,
    prompt TEXT,
    welcome_message TEXT,
    voice TEXT,
    language TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX agents_org ON agents(organization_id, created_at);

CREATE TABLE phone_numbers (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations(id),
    phone_number TEXT NOT NULL,
    label TEXT,
    nickname TEXT,
    country_code TEXT,
    status TEXT NOT NULL,
    provider TEXT NOT NULL,
    provider_config TEXT NOT NULL,
    allowed_destination_countries TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (organization_id, phone_number)
);

CREATE TABLE workflows (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations(id),
    title TEXT NOT NULL,
    description TEXT,
    status TEXT NOT NULL,
    entry_node_id TEXT,
    settings TEXT NOT NULL,
    revision BIGINT NOT NULL DEFAULT 0,
    last_triggered_at BIGINT,
    activated_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX workflows_org ON workflows(organization_id, created_at);

CREATE TABLE nodes (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    node_type TEXT NOT NULL,
    label TEXT NOT NULL,
    position_x DOUBLE PRECISION NOT NULL,
    position_y DOUBLE PRECISION NOT NULL,
    config TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX nodes_workflow ON nodes(workflow_id);

CREATE TABLE edges (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    from_node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    to_node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    label TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX edges_workflow ON edges(workflow_id);

-- The lead row is the execution: status, state, position, due time, fence (seq) and lease.
CREATE TABLE leads (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    workflow_id TEXT NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    phone_number TEXT NOT NULL,
    phone_country TEXT,
    metadata TEXT NOT NULL,
    timezone TEXT,
    status TEXT NOT NULL,
    state TEXT,
    current_node_id TEXT,
    due_at BIGINT,
    queued_at BIGINT,
    exit_reason TEXT,
    seq BIGINT NOT NULL DEFAULT 0,
    step_seq BIGINT,
    attempt BIGINT NOT NULL DEFAULT 0,
    call_count BIGINT NOT NULL DEFAULT 0,
    instant_steps BIGINT NOT NULL DEFAULT 0,
    visit BIGINT NOT NULL DEFAULT 0,
    facts TEXT NOT NULL DEFAULT '{}',
    pending_outcome TEXT,
    current_call_id TEXT,
    removal TEXT,
    lease_owner TEXT,
    lease_until BIGINT,
    enrolled_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX leads_due ON leads(due_at) WHERE due_at IS NOT NULL;
CREATE INDEX leads_workflow_status ON leads(workflow_id, status);
CREATE INDEX leads_workflow_node ON leads(workflow_id, current_node_id);
CREATE INDEX leads_workflow_phone ON leads(workflow_id, phone_number);
CREATE INDEX leads_throttled ON leads(workflow_id, queued_at) WHERE state = 'throttled';
CREATE INDEX leads_calling ON leads(workflow_id) WHERE state = 'calling';
-- A number is never enrolled twice at once in one workflow.
CREATE UNIQUE INDEX leads_open_phone ON leads(workflow_id, phone_number) WHERE status IN ('pending', 'in_progress');

CREATE TABLE lead_history (
    lead_id TEXT NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
    idx BIGINT NOT NULL,
    node_id TEXT NOT NULL,
    node_label TEXT NOT NULL,
    node_type TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT,
    edge_id TEXT,
    next_node_id TEXT,
    call_id TEXT,
    attempts BIGINT,
    detail TEXT,
    entered_at BIGINT NOT NULL,
    exited_at BIGINT,
    PRIMARY KEY (lead_id, idx)
);

CREATE TABLE lead_variable_keys (
    workflow_id TEXT NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    PRIMARY KEY (workflow_id, key)
);

-- Calls survive workflow deletion: no foreign key to workflows or leads.
CREATE TABLE calls (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    workflow_id TEXT,
    workflow_lead_id TEXT,
    node_id TEXT,
    agent_id TEXT,
    from_phone_number TEXT NOT NULL,
    to_phone_number TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT,
    end_reason TEXT,
    duration_seconds BIGINT,
    transcript TEXT,
    summary TEXT,
    analysis TEXT,
    recording_url TEXT,
    provider TEXT NOT NULL,
    provider_call_id TEXT,
    idempotency_key TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    answered_at BIGINT,
    ended_at BIGINT
);
CREATE INDEX calls_org ON calls(organization_id, created_at);
CREATE INDEX calls_workflow ON calls(workflow_id);
CREATE INDEX calls_lead ON calls(workflow_lead_id);

-- Responses of POST requests sent with an Idempotency-Key, kept 24 h per API key.
CREATE TABLE idempotency_keys (
    api_key_id TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    status BIGINT,
    content_type TEXT,
    body BYTEA,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (api_key_id, key)
);
