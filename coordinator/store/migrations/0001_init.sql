-- Accord coordinator schema, version 1.
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE teams (
    name TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    retry_json TEXT NOT NULL DEFAULT '{}',
    timeouts_json TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE contracts (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    team TEXT NOT NULL,
    major INTEGER NOT NULL,
    vkey INTEGER NOT NULL,
    fields_json TEXT NOT NULL,
    source_text TEXT NOT NULL,
    deprecated_json TEXT,
    registered_ms INTEGER NOT NULL,
    registered_by TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX contracts_team ON contracts (team);

CREATE TABLE workflows (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    team TEXT NOT NULL,
    description TEXT NOT NULL,
    source_text TEXT NOT NULL,
    source_name TEXT NOT NULL,
    definition_json TEXT NOT NULL,
    registered_ms INTEGER NOT NULL,
    registered_by TEXT NOT NULL,
    contracts_json TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX workflows_team ON workflows (team);

CREATE TABLE workflow_contracts (
    workflow TEXT NOT NULL,
    version INTEGER NOT NULL,
    contract TEXT NOT NULL,
    PRIMARY KEY (contract, workflow, version)
);

CREATE TABLE agents (
    agent_id TEXT PRIMARY KEY,
    team TEXT NOT NULL,
    bindings_json TEXT NOT NULL,
    concurrency INTEGER NOT NULL,
    hostname TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    registered_ms INTEGER NOT NULL
);

CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    workflow_version INTEGER NOT NULL,
    team TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    caller_team TEXT NOT NULL,
    involved TEXT NOT NULL,   -- ",team1,team2," for LIKE filtering
    data_json TEXT NOT NULL   -- the whole record
);
CREATE INDEX runs_active ON runs (status) WHERE status IN ('pending', 'running');
CREATE INDEX runs_created ON runs (created_ms);
CREATE INDEX runs_idem ON runs (workflow, caller_team, idempotency_key) WHERE idempotency_key != '';

CREATE TABLE steps (
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    data_json TEXT NOT NULL,
    PRIMARY KEY (run_id, step_id)
);

CREATE TABLE attempts (
    attempt_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    data_json TEXT NOT NULL
);
CREATE INDEX attempts_run ON attempts (run_id);

CREATE TABLE requests (
    scope TEXT NOT NULL,
    request_id TEXT NOT NULL,
    answer_json TEXT NOT NULL,
    PRIMARY KEY (scope, request_id)
);

CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    owner_team TEXT NOT NULL,
    platform_intervention INTEGER NOT NULL,
    details_json TEXT NOT NULL
);
CREATE INDEX audit_owner ON audit (owner_team, id);

CREATE TABLE events (
    event_id TEXT PRIMARY KEY,
    contract TEXT NOT NULL,
    contract_version TEXT NOT NULL,
    team TEXT NOT NULL,
    payload_json TEXT NOT NULL,
    published_ms INTEGER NOT NULL,
    triggered_json TEXT NOT NULL,
    trace_context_json TEXT NOT NULL
);
CREATE INDEX events_contract ON events (contract, published_ms);

CREATE TABLE spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT NOT NULL,
    name TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    team TEXT NOT NULL,
    service TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT NOT NULL,
    attributes_json TEXT NOT NULL,
    events_json TEXT NOT NULL,
    links_json TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX spans_end ON spans (end_ns);
CREATE INDEX spans_run ON spans (run_id);
