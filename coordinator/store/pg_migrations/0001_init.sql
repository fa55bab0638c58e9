-- Accord coordinator schema for PostgreSQL, version 1: the same tables and columns as the SQLite
-- schema at its version 3 (coordinator/store/migrations/), so that both stores share their row
-- codec (coordinator/store/codec.py).
--
-- Text that is compared or sorted is COLLATE "C": bytewise, as SQLite compares, so both stores
-- answer in the same order whatever the database's locale (and LIKE can use the indexes).
-- JSON is kept as text, compact, exactly as the codec wrote it: readable as it is, and castable
-- (data_json::jsonb ->> 'status') for ad-hoc queries; jsonb would refuse some payloads a run may
-- carry (a "\u0000" in a string) and rewrite others. Times are milliseconds (spans: nanoseconds)
-- since the epoch, as bigint.

CREATE TABLE settings (
    key text COLLATE "C" PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE teams (
    name text COLLATE "C" PRIMARY KEY,
    token_hash text NOT NULL,
    created_ms bigint NOT NULL,
    retry_json text NOT NULL DEFAULT '{}',
    timeouts_json text NOT NULL DEFAULT '{}'
);

CREATE TABLE contracts (
    name text COLLATE "C" NOT NULL,
    version text COLLATE "C" NOT NULL,
    team text COLLATE "C" NOT NULL,
    major integer NOT NULL,
    vkey bigint NOT NULL,  -- the version as one orderable number (codec.contract_to_row)
    fields_json text NOT NULL,
    source_text text NOT NULL,
    deprecated_json text,
    registered_ms bigint NOT NULL,
    registered_by text NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX contracts_team ON contracts (team);

CREATE TABLE workflows (
    name text COLLATE "C" NOT NULL,
    version integer NOT NULL,
    team text COLLATE "C" NOT NULL,
    description text NOT NULL,
    source_text text NOT NULL,
    source_name text NOT NULL,
    definition_json text NOT NULL,
    registered_ms bigint NOT NULL,
    registered_by text NOT NULL,
    contracts_json text NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX workflows_team ON workflows (team);

-- The consumer index: which workflow versions call which contract.
CREATE TABLE workflow_contracts (
    workflow text COLLATE "C" NOT NULL,
    version integer NOT NULL,
    contract text COLLATE "C" NOT NULL,
    PRIMARY KEY (contract, workflow, version)
);

CREATE TABLE agents (
    agent_id text COLLATE "C" PRIMARY KEY,
    team text NOT NULL,
    bindings_json text NOT NULL,
    concurrency integer NOT NULL,
    hostname text NOT NULL,
    agent_version text NOT NULL,
    registered_ms bigint NOT NULL
);

-- runs.version: compare-and-swap. A transition writes a run only while its stored version is
-- still the one it read (Store.apply), so a stale writer is refused by the database, not by a
-- lock in memory.
CREATE TABLE runs (
    run_id text COLLATE "C" PRIMARY KEY,
    workflow text COLLATE "C" NOT NULL,
    workflow_version integer NOT NULL,
    team text COLLATE "C" NOT NULL,
    status text NOT NULL,
    created_ms bigint NOT NULL,
    finished_ms bigint NOT NULL,
    idempotency_key text COLLATE "C" NOT NULL,
    caller_team text COLLATE "C" NOT NULL,
    involved text[] NOT NULL,  -- the teams involved, for the team filters of list_runs
    sampled boolean NOT NULL DEFAULT true,
    version bigint NOT NULL DEFAULT 1,
    data_json text NOT NULL    -- the whole record but its version
);
CREATE INDEX runs_active ON runs (status) WHERE status IN ('pending', 'running');
CREATE INDEX runs_created ON runs (created_ms DESC, run_id);
CREATE INDEX runs_involved ON runs USING gin (involved);
-- The idempotency key of a run start.
CREATE UNIQUE INDEX runs_idempotency ON runs (workflow, caller_team, idempotency_key)
    WHERE idempotency_key <> '';

CREATE TABLE steps (
    run_id text COLLATE "C" NOT NULL,
    step_id text COLLATE "C" NOT NULL,
    data_json text NOT NULL,
    PRIMARY KEY (run_id, step_id)
);

CREATE TABLE attempts (
    attempt_id text COLLATE "C" PRIMARY KEY,
    run_id text COLLATE "C" NOT NULL,
    step_id text COLLATE "C" NOT NULL,
    data_json text NOT NULL
);
CREATE INDEX attempts_run ON attempts (run_id);

-- Answers to agents' completions, replayed to a retried request.
CREATE TABLE requests (
    scope text COLLATE "C" NOT NULL,
    request_id text COLLATE "C" NOT NULL,
    answer_json text NOT NULL,
    PRIMARY KEY (scope, request_id)
);

CREATE TABLE audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms bigint NOT NULL,
    actor text COLLATE "C" NOT NULL,
    action text NOT NULL,
    object text NOT NULL,
    owner_team text COLLATE "C" NOT NULL,
    platform_intervention boolean NOT NULL,
    details_json text NOT NULL
);
CREATE INDEX audit_owner ON audit (owner_team, id);
CREATE INDEX audit_actor ON audit (actor, id);

CREATE TABLE events (
    event_id text COLLATE "C" PRIMARY KEY,
    contract text COLLATE "C" NOT NULL,
    contract_version text NOT NULL,
    team text NOT NULL,
    payload_json text NOT NULL,
    published_ms bigint NOT NULL,
    triggered_json text NOT NULL,
    trace_context_json text NOT NULL
);
CREATE INDEX events_published ON events (published_ms DESC, event_id);
CREATE INDEX events_contract ON events (contract, published_ms DESC, event_id);

CREATE TABLE spans (
    trace_id text COLLATE "C" NOT NULL,
    span_id text COLLATE "C" NOT NULL,
    parent_span_id text NOT NULL,
    name text NOT NULL,
    start_ns bigint NOT NULL,
    end_ns bigint NOT NULL,
    team text NOT NULL,
    service text NOT NULL,
    kind text NOT NULL,
    status text NOT NULL,
    status_message text NOT NULL,
    attributes_json text NOT NULL,
    events_json text NOT NULL,
    links_json text NOT NULL,
    run_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX spans_end ON spans (end_ns);
CREATE INDEX spans_run ON spans (run_id);

-- Durable timers, one per (kind, key) (coordinator.store.records.TIMER_*). Processors claim due
-- ones with SELECT ... FOR UPDATE SKIP LOCKED (claimed_until_ms: 0 = unclaimed; a claim that ran
-- out is free again) and fire each in the transition that deletes it.
CREATE TABLE timers (
    kind text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    run_id text COLLATE "C" NOT NULL,
    due_ms bigint NOT NULL,
    claimed_until_ms bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, key)
);
CREATE INDEX timers_due ON timers (due_ms, kind, key);
-- Timers whose claim holds past their due time: when each could be claimed again.
CREATE INDEX timers_claimed ON timers (claimed_until_ms) WHERE claimed_until_ms > due_ms;

-- Tasks offered to the agents serving (contract, major): scheduled attempts nobody claimed yet.
CREATE TABLE offers (
    attempt_id text COLLATE "C" PRIMARY KEY,
    run_id text COLLATE "C" NOT NULL,
    contract text COLLATE "C" NOT NULL,
    major integer NOT NULL,
    offered_ms bigint NOT NULL
);
CREATE INDEX offers_queue ON offers (contract, major, offered_ms, attempt_id);
