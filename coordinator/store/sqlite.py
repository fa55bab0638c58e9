"""SQLite Store: WAL, one writer thread with group commit, readers on their own connections.

Every write goes through one dedicated thread: it drains whatever jobs are queued and commits
them in one transaction (each job in its own savepoint, so one failing job does not undo the
others). Callers await a future that resolves after the commit, so "durable before acknowledged"
holds while concurrent writes share one fsync. Reads run on a small thread pool, never on the
event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from contracts.model import Deprecation, RetryPolicy, Timeouts
from coordinator.store import codec
from coordinator.store.records import (
    ActiveState,
    AgentRecord,
    AttemptRecord,
    AuditRecord,
    Binding,
    Changes,
    ContractRecord,
    EventRecord,
    RunFilter,
    RunRecord,
    SpanRecord,
    StepRecord,
    TaskFailure,
    TeamRecord,
    WorkflowRecord,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")
_STOP = object()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_FIELDS: dict[type, tuple[str, ...]] = {}


def _fields_of(record: Any) -> dict[str, Any]:
    """A record's fields as a shallow dict. Its payloads are JSON values already, so
    ``dataclasses.asdict``'s recursive deep copy (the biggest cost of a commit on the hot path,
    see benchmarks/) bought nothing before ``json.dumps``; a nested dataclass still serialises
    through ``_json_default``."""
    names = _FIELDS.get(type(record))
    if names is None:
        names = _FIELDS[type(record)] = tuple(f.name for f in dataclasses.fields(record))
    return {name: getattr(record, name) for name in names}


def _run_to_row(run: RunRecord) -> tuple[Any, ...]:
    data = _fields_of(run)
    data["error"] = run.error.to_json() if run.error else None
    return (
        run.run_id,
        run.workflow,
        run.workflow_version,
        run.team,
        run.status,
        run.created_ms,
        run.finished_ms,
        run.idempotency_key,
        run.caller_team,
        "," + ",".join(run.involved_teams) + ",",
        int(run.sampled),
        _dumps(data),
    )


def _run_from_json(text: str) -> RunRecord:
    data = json.loads(text)
    data["error"] = TaskFailure.from_json(data.get("error"))
    data["involved_teams"] = tuple(data.get("involved_teams") or ())
    return RunRecord(**data)


def _step_to_json(step: StepRecord) -> str:
    data = _fields_of(step)
    data["error"] = step.error.to_json() if step.error else None
    return _dumps(data)


def _step_from_json(text: str) -> StepRecord:
    data = json.loads(text)
    data["error"] = TaskFailure.from_json(data.get("error"))
    return StepRecord(**data)


def _attempt_to_json(attempt: AttemptRecord) -> str:
    data = _fields_of(attempt)
    data["error"] = attempt.error.to_json() if attempt.error else None
    return _dumps(data)


def _attempt_from_json(text: str) -> AttemptRecord:
    data = json.loads(text)
    data["error"] = TaskFailure.from_json(data.get("error"))
    return AttemptRecord(**data)


def _audit_row(audit: AuditRecord) -> tuple[Any, ...]:
    return (
        audit.at_ms,
        audit.actor,
        audit.action,
        audit.object,
        audit.owner_team,
        int(audit.platform_intervention),
        _dumps(audit.details),
    )


_AUDIT_INSERT = (
    "INSERT INTO audit (at_ms, actor, action, object, owner_team, platform_intervention, details_json)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _contract_from_row(row: sqlite3.Row) -> ContractRecord:
    contract = codec.contract_from_json(
        json.loads(row["fields_json"]),
        row["source_text"],
        json.loads(row["deprecated_json"]) if row["deprecated_json"] else None,
    )
    return ContractRecord(contract, row["registered_ms"], row["registered_by"])


def _workflow_from_row(row: sqlite3.Row) -> WorkflowRecord:
    return WorkflowRecord(
        name=row["name"],
        team=row["team"],
        version=row["version"],
        description=row["description"],
        source_text=row["source_text"],
        source_name=row["source_name"],
        definition_json=row["definition_json"],
        registered_ms=row["registered_ms"],
        registered_by=row["registered_by"],
        contracts=tuple(json.loads(row["contracts_json"])),
    )


def _team_from_row(row: sqlite3.Row) -> TeamRecord:
    return TeamRecord(
        name=row["name"],
        token_hash=row["token_hash"],
        created_ms=row["created_ms"],
        retry=codec.retry_from_json(json.loads(row["retry_json"])),
        timeouts=codec.timeouts_from_json(json.loads(row["timeouts_json"])),
    )


def _span_from_row(row: sqlite3.Row) -> SpanRecord:
    return SpanRecord(
        trace_id=row["trace_id"],
        span_id=row["span_id"],
        parent_span_id=row["parent_span_id"],
        name=row["name"],
        start_ns=row["start_ns"],
        end_ns=row["end_ns"],
        team=row["team"],
        service=row["service"],
        kind=row["kind"],
        status=row["status"],
        status_message=row["status_message"],
        attributes=json.loads(row["attributes_json"]),
        events=json.loads(row["events_json"]),
        links=json.loads(row["links_json"]),
        run_id=row["run_id"],
    )


class SqliteStore:
    """The embedded default Store."""

    def __init__(self, path: Path, *, readers: int = 2) -> None:
        self._path = path
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="sqlite-read")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    # ---------- connections ----------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash (kill -9); only power loss may drop the
        # last commits.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(self._reader()))

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, future, loop))
        return await future

    def _writer_main(self, conn: sqlite3.Connection) -> None:
        while True:
            first = self._jobs.get()
            if first is _STOP:
                break
            batch = [first]
            while len(batch) < 256:
                try:
                    item = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._jobs.put(_STOP)
                    break
                batch.append(item)
            results: list[tuple[Any, asyncio.Future[Any], asyncio.AbstractEventLoop, bool]] = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                for fn, future, loop in batch:
                    conn.execute("SAVEPOINT job")
                    try:
                        value = fn(conn)
                    except BaseException as exc:
                        conn.execute("ROLLBACK TO job")
                        conn.execute("RELEASE job")
                        results.append((exc, future, loop, False))
                    else:
                        conn.execute("RELEASE job")
                        results.append((value, future, loop, True))
                conn.execute("COMMIT")
            except BaseException as exc:  # the commit itself failed: every job fails
                logger.exception("sqlite commit failed")
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                results = [(exc, future, loop, False) for _, future, loop in batch]
            for value, future, loop, ok in results:
                loop.call_soon_threadsafe(_resolve, future, value, ok)
        conn.close()

    # ---------- lifecycle ----------

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = await asyncio.to_thread(self._connect)
        await asyncio.to_thread(self._migrate, conn)
        self._writer = threading.Thread(
            target=self._writer_main, args=(conn,), name="sqlite-writer", daemon=True
        )
        self._writer.start()

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        files = sorted(
            (f for f in resources.files("coordinator.store.migrations").iterdir() if f.name.endswith(".sql")),
            key=lambda f: f.name,
        )
        for f in files:
            number = int(f.name.split("_", 1)[0])
            if number <= current:
                continue
            logger.info("applying schema migration %s", f.name)
            conn.executescript("BEGIN;\n" + f.read_text() + f"\nPRAGMA user_version = {number};\nCOMMIT;")

    async def close(self) -> None:
        if self._writer is not None:
            self._jobs.put(_STOP)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    # ---------- settings ----------

    async def get_setting(self, key: str) -> str | None:
        def q(c: sqlite3.Connection) -> str | None:
            row = c.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

        return await self._read(q)

    async def set_setting(self, key: str, value: str) -> None:
        await self._write(
            lambda c: c.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))
        )

    # ---------- teams ----------

    async def create_team(self, team: TeamRecord, audit: AuditRecord) -> None:
        def w(c: sqlite3.Connection) -> None:
            if c.execute("SELECT 1 FROM teams WHERE name = ?", (team.name,)).fetchone():
                raise KeyError(team.name)
            c.execute(
                "INSERT INTO teams (name, token_hash, created_ms, retry_json, timeouts_json) VALUES (?,?,?,?,?)",
                (
                    team.name,
                    team.token_hash,
                    team.created_ms,
                    _dumps(codec.retry_to_json(team.retry)),
                    _dumps(codec.timeouts_to_json(team.timeouts)),
                ),
            )
            c.execute(_AUDIT_INSERT, _audit_row(audit))

        await self._write(w)

    async def get_team(self, name: str) -> TeamRecord | None:
        def q(c: sqlite3.Connection) -> TeamRecord | None:
            row = c.execute("SELECT * FROM teams WHERE name = ?", (name,)).fetchone()
            return None if row is None else _team_from_row(row)

        return await self._read(q)

    async def list_teams(self) -> list[TeamRecord]:
        return await self._read(
            lambda c: [_team_from_row(r) for r in c.execute("SELECT * FROM teams ORDER BY name")]
        )

    async def set_team_token(self, name: str, token_hash: str, audit: AuditRecord) -> None:
        def w(c: sqlite3.Connection) -> None:
            c.execute("UPDATE teams SET token_hash = ? WHERE name = ?", (token_hash, name))
            c.execute(_AUDIT_INSERT, _audit_row(audit))

        await self._write(w)

    async def set_team_defaults(self, name: str, retry: RetryPolicy, timeouts: Timeouts) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE teams SET retry_json = ?, timeouts_json = ? WHERE name = ?",
                (_dumps(codec.retry_to_json(retry)), _dumps(codec.timeouts_to_json(timeouts)), name),
            )
        )

    # ---------- contracts ----------

    async def add_contract(self, record: ContractRecord, audit: AuditRecord) -> None:
        contract = record.contract
        major, minor, patch = codec.version_key(contract.version)

        def w(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO contracts (name, version, team, major, vkey, fields_json, source_text,"
                " deprecated_json, registered_ms, registered_by) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    contract.name,
                    contract.version,
                    contract.team,
                    major,
                    major * 1_000_000_000_000 + minor * 1_000_000 + patch,
                    _dumps(codec.contract_to_json(contract)),
                    contract.source_text,
                    _dumps(codec.deprecation_to_json(contract.deprecated)) if contract.deprecated else None,
                    record.registered_ms,
                    record.registered_by,
                ),
            )
            c.execute(_AUDIT_INSERT, _audit_row(audit))

        await self._write(w)

    async def contract_versions(self, name: str) -> list[ContractRecord]:
        return await self._read(
            lambda c: [
                _contract_from_row(r)
                for r in c.execute("SELECT * FROM contracts WHERE name = ? ORDER BY vkey", (name,))
            ]
        )

    async def list_contracts(self, team: str = "", name_prefix: str = "") -> list[ContractRecord]:
        sql = "SELECT * FROM contracts WHERE 1=1"
        args: list[Any] = []
        if team:
            sql += " AND team = ?"
            args.append(team)
        if name_prefix:
            sql += " AND substr(name, 1, ?) = ?"
            args += [len(name_prefix), name_prefix]
        sql += " ORDER BY name, vkey"
        return await self._read(lambda c: [_contract_from_row(r) for r in c.execute(sql, args)])

    async def set_deprecation(
        self, name: str, versions: list[str], deprecation: Deprecation | None, audit: AuditRecord
    ) -> None:
        value = _dumps(codec.deprecation_to_json(deprecation)) if deprecation else None

        def w(c: sqlite3.Connection) -> None:
            c.executemany(
                "UPDATE contracts SET deprecated_json = ? WHERE name = ? AND version = ?",
                [(value, name, v) for v in versions],
            )
            c.execute(_AUDIT_INSERT, _audit_row(audit))

        await self._write(w)

    # ---------- workflows ----------

    async def add_workflow(self, record: WorkflowRecord, audit: AuditRecord) -> None:
        def w(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO workflows (name, version, team, description, source_text, source_name,"
                " definition_json, registered_ms, registered_by, contracts_json)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    record.name,
                    record.version,
                    record.team,
                    record.description,
                    record.source_text,
                    record.source_name,
                    record.definition_json,
                    record.registered_ms,
                    record.registered_by,
                    _dumps(list(record.contracts)),
                ),
            )
            c.executemany(
                "INSERT OR IGNORE INTO workflow_contracts (workflow, version, contract) VALUES (?,?,?)",
                [(record.name, record.version, name) for name in record.contracts],
            )
            c.execute(_AUDIT_INSERT, _audit_row(audit))

        await self._write(w)

    async def workflow_versions(self, name: str) -> list[WorkflowRecord]:
        return await self._read(
            lambda c: [
                _workflow_from_row(r)
                for r in c.execute("SELECT * FROM workflows WHERE name = ? ORDER BY version", (name,))
            ]
        )

    _NEWEST = (
        "SELECT w.* FROM workflows w JOIN (SELECT name, MAX(version) AS v FROM workflows GROUP BY name) n"
        " ON w.name = n.name AND w.version = n.v"
    )

    async def list_workflows(self, team: str = "") -> list[WorkflowRecord]:
        sql = self._NEWEST + (" WHERE w.team = ?" if team else "") + " ORDER BY w.name"
        return await self._read(
            lambda c: [_workflow_from_row(r) for r in c.execute(sql, (team,) if team else ())]
        )

    async def consumers_of(self, contract_name: str) -> list[WorkflowRecord]:
        sql = (
            self._NEWEST + " JOIN workflow_contracts wc ON wc.workflow = w.name AND wc.version = w.version"
            " WHERE wc.contract = ? ORDER BY w.name"
        )
        return await self._read(lambda c: [_workflow_from_row(r) for r in c.execute(sql, (contract_name,))])

    # ---------- agents ----------

    async def put_agent(self, agent: AgentRecord) -> None:
        await self._write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO agents VALUES (?,?,?,?,?,?,?)",
                (
                    agent.agent_id,
                    agent.team,
                    _dumps([dataclasses.asdict(b) for b in agent.bindings]),
                    agent.concurrency,
                    agent.hostname,
                    agent.agent_version,
                    agent.registered_ms,
                ),
            )
        )

    async def list_agents(self) -> list[AgentRecord]:
        def q(c: sqlite3.Connection) -> list[AgentRecord]:
            return [
                AgentRecord(
                    agent_id=r["agent_id"],
                    team=r["team"],
                    bindings=tuple(Binding(**b) for b in json.loads(r["bindings_json"])),
                    concurrency=r["concurrency"],
                    hostname=r["hostname"],
                    agent_version=r["agent_version"],
                    registered_ms=r["registered_ms"],
                )
                for r in c.execute("SELECT * FROM agents")
            ]

        return await self._read(q)

    # ---------- runs ----------

    async def apply(self, changes: Changes) -> None:
        runs = [_run_to_row(r) for r in changes.runs]
        steps = [(s.run_id, s.step_id, _step_to_json(s)) for s in changes.steps]
        attempts = [(a.attempt_id, a.run_id, a.step_id, _attempt_to_json(a)) for a in changes.attempts]
        audit = [_audit_row(a) for a in changes.audit]
        events = [
            (
                e.event_id,
                e.contract,
                e.contract_version,
                e.team,
                _dumps(e.payload),
                e.published_ms,
                _dumps(list(e.triggered_runs)),
                _dumps(e.trace_context),
            )
            for e in changes.events
        ]
        requests = [(scope, rid, _dumps(answer)) for (scope, rid), answer in changes.requests.items()]

        def w(c: sqlite3.Connection) -> None:
            if runs:
                c.executemany("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", runs)
            if steps:
                c.executemany("INSERT OR REPLACE INTO steps VALUES (?,?,?)", steps)
            if attempts:
                c.executemany("INSERT OR REPLACE INTO attempts VALUES (?,?,?,?)", attempts)
            if audit:
                c.executemany(_AUDIT_INSERT, audit)
            if events:
                c.executemany("INSERT OR REPLACE INTO events VALUES (?,?,?,?,?,?,?,?)", events)
            if requests:
                c.executemany("INSERT OR REPLACE INTO requests VALUES (?,?,?)", requests)

        await self._write(w)

    async def get_run(self, run_id: str) -> RunRecord | None:
        def q(c: sqlite3.Connection) -> RunRecord | None:
            row = c.execute("SELECT data_json FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            return None if row is None else _run_from_json(row[0])

        return await self._read(q)

    async def run_steps(self, run_id: str) -> tuple[list[StepRecord], list[AttemptRecord]]:
        def q(c: sqlite3.Connection) -> tuple[list[StepRecord], list[AttemptRecord]]:
            steps = [
                _step_from_json(r[0])
                for r in c.execute("SELECT data_json FROM steps WHERE run_id = ?", (run_id,))
            ]
            attempts = [
                _attempt_from_json(r[0])
                for r in c.execute("SELECT data_json FROM attempts WHERE run_id = ?", (run_id,))
            ]
            return steps, attempts

        return await self._read(q)

    async def find_run(self, workflow: str, caller_team: str, idempotency_key: str) -> RunRecord | None:
        def q(c: sqlite3.Connection) -> RunRecord | None:
            row = c.execute(
                "SELECT data_json FROM runs WHERE workflow = ? AND caller_team = ? AND idempotency_key = ?"
                " AND idempotency_key != ''",
                (workflow, caller_team, idempotency_key),
            ).fetchone()
            return None if row is None else _run_from_json(row[0])

        return await self._read(q)

    async def list_runs(self, query: RunFilter) -> list[RunRecord]:
        sql = "SELECT data_json FROM runs WHERE 1=1"
        args: list[Any] = []
        if query.workflow:
            sql += " AND workflow = ?"
            args.append(query.workflow)
        if query.status:
            sql += " AND status = ?"
            args.append(query.status)
        for team in (query.team, query.visible_to):
            if team:
                sql += " AND involved LIKE ?"
                args.append(f"%,{team},%")
        if query.created_after_ms:
            sql += " AND created_ms >= ?"
            args.append(query.created_after_ms)
        if query.created_before_ms:
            sql += " AND created_ms < ?"
            args.append(query.created_before_ms)
        if query.query:
            sql += " AND (run_id LIKE ? OR idempotency_key LIKE ?)"
            args += [f"%{query.query}%", f"%{query.query}%"]
        sql += " ORDER BY created_ms DESC, run_id LIMIT ? OFFSET ?"
        args += [query.limit, query.offset]
        return await self._read(lambda c: [_run_from_json(r[0]) for r in c.execute(sql, args)])

    async def load_active(self) -> ActiveState:
        def q(c: sqlite3.Connection) -> ActiveState:
            runs = [
                _run_from_json(r[0])
                for r in c.execute("SELECT data_json FROM runs WHERE status IN ('pending', 'running')")
            ]
            steps: list[StepRecord] = []
            attempts: list[AttemptRecord] = []
            for run in runs:
                steps += [
                    _step_from_json(r[0])
                    for r in c.execute("SELECT data_json FROM steps WHERE run_id = ?", (run.run_id,))
                ]
                attempts += [
                    _attempt_from_json(r[0])
                    for r in c.execute("SELECT data_json FROM attempts WHERE run_id = ?", (run.run_id,))
                ]
            return ActiveState(runs, steps, attempts)

        return await self._read(q)

    async def get_request(self, scope: str, request_id: str) -> Any | None:
        def q(c: sqlite3.Connection) -> Any | None:
            row = c.execute(
                "SELECT answer_json FROM requests WHERE scope = ? AND request_id = ?", (scope, request_id)
            ).fetchone()
            return None if row is None else json.loads(row[0])

        return await self._read(q)

    # ---------- audit and events ----------

    async def add_audit(self, audit: AuditRecord) -> None:
        await self._write(lambda c: c.execute(_AUDIT_INSERT, _audit_row(audit)))

    async def list_audit(self, team: str = "", offset: int = 0, limit: int = 100) -> list[AuditRecord]:
        sql = "SELECT * FROM audit" + (" WHERE owner_team = ? OR actor = ?" if team else "")
        sql += " ORDER BY id LIMIT ? OFFSET ?"
        args: list[Any] = ([team, team] if team else []) + [limit, offset]

        def q(c: sqlite3.Connection) -> list[AuditRecord]:
            return [
                AuditRecord(
                    id=r["id"],
                    at_ms=r["at_ms"],
                    actor=r["actor"],
                    action=r["action"],
                    object=r["object"],
                    owner_team=r["owner_team"],
                    platform_intervention=bool(r["platform_intervention"]),
                    details=json.loads(r["details_json"]),
                )
                for r in c.execute(sql, args)
            ]

        return await self._read(q)

    async def list_events(self, contract: str = "", offset: int = 0, limit: int = 100) -> list[EventRecord]:
        sql = "SELECT * FROM events" + (" WHERE contract = ?" if contract else "")
        sql += " ORDER BY published_ms DESC LIMIT ? OFFSET ?"
        args: list[Any] = ([contract] if contract else []) + [limit, offset]

        def q(c: sqlite3.Connection) -> list[EventRecord]:
            return [
                EventRecord(
                    event_id=r["event_id"],
                    contract=r["contract"],
                    contract_version=r["contract_version"],
                    team=r["team"],
                    payload=json.loads(r["payload_json"]),
                    published_ms=r["published_ms"],
                    triggered_runs=tuple(json.loads(r["triggered_json"])),
                    trace_context=json.loads(r["trace_context_json"]),
                )
                for r in c.execute(sql, args)
            ]

        return await self._read(q)

    # ---------- spans ----------

    async def insert_spans(self, spans: list[SpanRecord]) -> None:
        if not spans:
            return
        rows = [
            (
                s.trace_id,
                s.span_id,
                s.parent_span_id,
                s.name,
                s.start_ns,
                s.end_ns,
                s.team,
                s.service,
                s.kind,
                s.status,
                s.status_message,
                _dumps(s.attributes),
                _dumps(s.events),
                _dumps(s.links),
                s.run_id,
            )
            for s in spans
        ]
        await self._write(
            lambda c: c.executemany(
                "INSERT OR REPLACE INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows
            )
        )

    async def spans_for_trace(self, trace_id: str) -> list[SpanRecord]:
        return await self._read(
            lambda c: [
                _span_from_row(r)
                for r in c.execute("SELECT * FROM spans WHERE trace_id = ? ORDER BY start_ns", (trace_id,))
            ]
        )

    async def prune_spans(self, before_ns: int) -> int:
        return await self._write(
            lambda c: c.execute("DELETE FROM spans WHERE end_ns < ?", (before_ns,)).rowcount
        )


def _resolve(future: asyncio.Future[Any], value: Any, ok: bool) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
