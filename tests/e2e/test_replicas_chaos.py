"""Several coordinators on one PostgreSQL database, with real agent processes of three teams
running a chain (team alpha's workflow calls alpha's, bravo's, then charlie's contract), while
replicas are killed (kill -9 at a random moment, one after another) or restarted one by one
(SIGTERM, then started again) under load.

Each team's agent is given every replica's address, in its own order, so the teams' work goes
through different replicas; runs are started through every replica too. The teams' engine is
the python engine calling ``chain_engine.work`` (written below), which logs every delivery raw,
before its own dedupe by idempotency key, and applies its side effect once per key; step ``b``
of every other run fails once after its side effect, so its retry waits on a durable backoff
timer, fired by whichever replica claims it.

Everything is checked against what the teams' code saw and what PostgreSQL holds (never a
replica's answers alone): every run succeeded with the results of the one side effect per step;
one key per step; an attempt is never handed out twice; the attempts of a step are numbered
1..n without a gap or a duplicate and end in one success, and every attempt beyond the first is
explained: the failure on purpose (its retry timer fired once), a task given back before its
agent got it, or a heartbeat lease that ran out across a crash (never without one); nothing is
left in ``timers`` or ``offers``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import random
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from contracts.errors import RemoteError
from coordinator.store import codec
from team_agent.testing import AgentProcess
from tests.support.postgres import TestDatabase
from tests.support.replicas import Replicas, stored_runs
from tests.support.scenario import contract, start_run
from tests.support.soak import sized
from tests.support.wait import wait_until

pytestmark = pytest.mark.postgres

TEAMS = ("alpha", "bravo", "charlie")
STEPS = ("a", "b", "c")  # step a calls alpha/step, b bravo/step, c charlie/step
FLAKY_EVERY = 2  # step b of the runs o0, o2, o4, ... fails once, after its side effect
# Generous upper bounds: they only guard against a hang on a loaded machine.
CRASH_POINT_WITHIN = 90.0
FINISH_WITHIN = 150.0
# Runs going at once in the rolling restart: a steady load rather than all at the start.
IN_FLIGHT = 8

# The teams' engine, imported by the python engine in each agent process. Every delivery is
# logged first (raw, whatever the key); the side effect is applied under a lock shared by every
# process, once per idempotency key, and gets a nonce, so that a run's output shows which
# application it carries.
ENGINE = textwrap.dedent(
    f'''
    import fcntl, json, os, random, time, uuid
    from pathlib import Path

    LEDGER = Path(os.environ["CHAOS_LEDGER"])


    class Flaky(Exception):
        """Failed on purpose, after the side effect: the retry must carry the same key."""


    def _append(name, record):
        with open(LEDGER / name, "a") as log:
            log.write(json.dumps(record) + "\\n")


    def work(input, task):
        key = task.idempotency_key
        with open(LEDGER / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _append("deliveries.jsonl", {{"key": key, "attempt": task.attempt,
                                          "attempt_id": task.attempt_id, "step": task.step_id}})
        time.sleep(random.uniform(0.02, 0.12))
        effect = LEDGER / "effects" / key
        failed = LEDGER / "failed" / key
        with open(LEDGER / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if effect.exists():
                result = json.loads(effect.read_text())
            else:
                result = {{"ref": f"{{input['ref']}}>{{task.step_id}}#{{uuid.uuid4().hex[:6]}}"}}
                effect.write_text(json.dumps(result))
                _append("applied.jsonl", {{"key": key, "ref": result["ref"]}})
            number = int(input["order_id"][1:])
            fail = task.step_id == "b" and number % {FLAKY_EVERY} == 0 and not failed.exists()
            if fail:
                failed.touch()
        if fail:
            raise Flaky("applied, then the engine's connection dropped")
        return result
    '''
)

WORKFLOW = """
workflow: alpha/chain
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  a:
    contract: alpha/step@^1
    input: {order_id: "${input.order_id}", ref: "${input.order_id}"}
  b:
    contract: bravo/step@^1
    input: {order_id: "${input.order_id}", ref: "${steps.a.output.ref}"}
  c:
    contract: charlie/step@^1
    input: {order_id: "${input.order_id}", ref: "${steps.b.output.ref}"}
output: {a: "${steps.a.output.ref}", b: "${steps.b.output.ref}", c: "${steps.c.output.ref}"}
"""


def _contract(team: str) -> str:
    return contract(
        f"{team}/step",
        input_props="{order_id: {type: string}, ref: {type: string}}",
        input_required="[order_id, ref]",
        extra=(
            "timeouts: {heartbeat: 5s, start_to_close: 2m}\n"
            "retry: {max_attempts: 10, initial_backoff: 200ms}\n"
            "idempotent: true\n"
        ),
    )


@dataclass
class Ledger:
    """What the teams' code saw, read from the files it wrote."""

    root: Path

    def _records(self, name: str) -> list[dict[str, Any]]:
        try:
            text = (self.root / name).read_text()
        except FileNotFoundError:
            return []
        # The agents append under their lock, but this reads without it: a line still being
        # written has no newline yet, and is left for the next read (parsing it raised, and the
        # test's load of runs died without a word, which looked like every agent stalling).
        complete = text[: text.rfind("\n") + 1]
        return [json.loads(line) for line in complete.splitlines() if line]

    def deliveries(self) -> list[dict[str, Any]]:
        return self._records("deliveries.jsonl")

    def applied(self) -> list[dict[str, Any]]:
        return self._records("applied.jsonl")

    def applied_count(self) -> int:
        try:
            return (self.root / "applied.jsonl").read_text().count("\n")
        except FileNotFoundError:
            return 0


@dataclass
class Chain:
    """Three teams, their contracts and the chain workflow on the replicas, and one real agent
    process per team, each given every replica's address starting with a different one."""

    replicas: Replicas
    workdir: Path
    protocol: str = "v1"
    tokens: dict[str, str] = field(default_factory=dict)
    agents: dict[str, AgentProcess] = field(default_factory=dict)

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.workdir / "ledger")

    async def set_up(self) -> None:
        replicas = self.replicas
        for n, team in enumerate(TEAMS):
            # Each team is made and registers through a different replica.
            member = replicas[n % len(replicas)]
            self.tokens[team] = await member.create_team(team)
            await member.register_contract(self.tokens[team], _contract(team))
        await replicas[-1].register_workflow(self.tokens["alpha"], WORKFLOW)
        engine_dir = self.workdir / "engine"
        engine_dir.mkdir(parents=True)
        (engine_dir / "chain_engine.py").write_text(ENGINE)
        for part in ("effects", "failed"):
            (self.workdir / "ledger" / part).mkdir(parents=True)
        for n, team in enumerate(TEAMS):
            config = {
                "team": team,
                "coordinator": replicas.addresses(first=n).split(","),
                "token": "${secret:ACCORD_TOKEN}",
                "concurrency": 4,
                "protocol": self.protocol,
                "implements": {
                    f"{team}/step@1": {
                        "engine": "python",
                        "with": {"callable": "chain_engine:work", "path": [str(engine_dir)]},
                    }
                },
            }
            path = self.workdir / f"agent-{team}.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            self.agents[team] = AgentProcess(
                path,
                workdir=self.workdir,
                agent_id=f"{team}-agent",
                env={"ACCORD_TOKEN": self.tokens[team], "CHAOS_LEDGER": str(self.workdir / "ledger")},
                log_level="info",
            ).start()

    async def start_runs(self, numbers: range, *, parallel: int = 16) -> list[str]:
        """Start runs o<i> (idempotency key k<i>) of alpha/chain, run i through a client given
        every replica starting with replica i: the run ids."""
        gate = asyncio.Semaphore(parallel)

        async def one(i: int) -> str:
            async with gate:
                return await self.start_run(i)

        return list(await asyncio.gather(*(one(i) for i in numbers)))

    async def start_run(self, i: int, within: float = 120.0) -> str:
        """Start run o<i>; a refusal while replicas come and go is tried again (the idempotency
        key makes the retry the same run)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            try:
                async with self.replicas.client(self.tokens["alpha"], first=i) as client:
                    started = await start_run(client, "alpha/chain", {"order_id": f"o{i}"}, key=f"k{i}")
                return str(started.run.run_id)
            except RemoteError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)

    def stop_agents(self) -> None:
        for agent in self.agents.values():
            if agent.running:
                try:
                    agent.stop(timeout=30)
                except Exception:
                    agent.kill()

    def agent_logs(self) -> str:
        return "\n".join(f"--- agent {team}:\n{agent.log[-3000:]}" for team, agent in self.agents.items())


# ---------- what PostgreSQL holds ----------


def _unfinished(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM runs WHERE status IN ('pending', 'running')").fetchone()
    assert row is not None
    return int(row[0])


async def wait_all_finished(url: str, context: Callable[[], str], within: float = FINISH_WITHIN) -> None:
    """Until no run is pending or running, read from PostgreSQL (whichever replica drove it)."""
    try:
        await wait_until(
            lambda: asyncio.to_thread(lambda: _unfinished(url) == 0), "every run finished", within
        )
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; still going: {_unfinished(url)}\n{stored_runs(url)}\n{context()}"
        ) from None


def _stored(url: str) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], int, int]:
    """Runs by id, attempts, and how many timers and offers are left."""
    with psycopg.connect(url) as conn:
        # Decoded as the store reads them (a stored record leaves out what its columns say and
        # fields at their defaults: coordinator/store/codec.py).
        runs = {
            run_id: {**dataclasses.asdict(codec.run_from_json(version, *texts)), "status": status}
            for run_id, status, version, *texts in conn.execute(
                "SELECT run_id, status, version, data_json, input_json, output_json FROM runs"
            )
        }
        attempts = [
            dataclasses.asdict(codec.attempt_from_row(*row))
            for row in conn.execute("SELECT attempt_id, run_id, step_id, data_json FROM attempts")
        ]
        timers = conn.execute("SELECT count(*) FROM timers").fetchone()
        offers = conn.execute("SELECT count(*) FROM offers").fetchone()
    assert timers is not None and offers is not None
    return runs, attempts, int(timers[0]), int(offers[0])


def check_chain(
    url: str, ledger: Ledger, run_ids: list[str], context: str, crashes_ms: list[int] | None = None
) -> dict[str, int]:
    """Every check of the module's docstring; returns counts worth reporting. ``crashes_ms``:
    when replicas were killed (unix ms), the only times a heartbeat lease may run out."""
    runs, attempts, timers_left, offers_left = _stored(url)
    deliveries = ledger.deliveries()
    applied = ledger.applied()

    assert sorted(runs) == sorted(run_ids), f"runs in the store are not the runs started{context}"
    not_ok = {
        r: (runs[r]["status"], runs[r].get("error")) for r in run_ids if runs[r]["status"] != "succeeded"
    }
    assert not not_ok, f"runs that did not succeed: {not_ok}{context}"

    expected = {f"{run_id}:{step}" for run_id in run_ids for step in STEPS}
    # One stable key per step across attempts and crashes: no step reached the team's code under
    # another key (which would have applied its side effect twice).
    delivered_keys = {d["key"] for d in deliveries}
    assert delivered_keys == expected, f"{sorted(delivered_keys ^ expected)[:10]}{context}"
    applied_keys = collections.Counter(a["key"] for a in applied)
    assert set(applied_keys) == expected and set(applied_keys.values()) == {1}, (
        f"side effects applied other than once per key: "
        f"{ {k: n for k, n in applied_keys.items() if n != 1} }{context}"
    )

    # An attempt is handed to an agent once, whatever replica claimed it.
    handed = collections.Counter(d["attempt_id"] for d in deliveries)
    twice = {attempt_id: n for attempt_id, n in handed.items() if n > 1}
    assert not twice, f"attempts handed out more than once: {twice}{context}"

    by_step: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for attempt in attempts:
        by_step[f"{attempt['run_id']}:{attempt['step_id']}"].append(attempt)
    assert set(by_step) == expected, f"{sorted(set(by_step) ^ expected)[:10]}{context}"
    stored_ids = {a["attempt_id"]: key for key, step_attempts in by_step.items() for a in step_attempts}
    strays = {d["attempt_id"] for d in deliveries if stored_ids.get(d["attempt_id"]) != d["key"]}
    assert not strays, f"deliveries of attempts the store does not hold for their key: {strays}{context}"

    flaky_runs = {
        run_id for run_id in run_ids if int(runs[run_id]["input"]["order_id"][1:]) % FLAKY_EVERY == 0
    }
    counts = collections.Counter(deliveries=len(deliveries), released=0, timed_out=0, timed_out_delivered=0)
    for key, step_attempts in by_step.items():
        step_attempts.sort(key=lambda a: a["number"])
        numbers = [a["number"] for a in step_attempts]
        statuses = [a["status"] for a in step_attempts]
        # The error's message too: which side gave a task back ("the poll of agent ... ended" or
        # "agent ... released the task: ..."), with its agent and times, says which path it took.
        shown = [
            (
                a["number"],
                a["status"],
                (a.get("error") or {}).get("type"),
                (a.get("error") or {}).get("message"),
                a.get("agent_id"),
                a.get("scheduled_ms"),
                a.get("started_ms"),
                a.get("finished_ms"),
            )
            for a in step_attempts
        ]
        # Numbered 1..n with no gap and no duplicate: no timer (a retry's backoff, a lease) fired
        # twice into a second attempt, on one replica or two.
        assert numbers == list(range(1, len(numbers) + 1)), f"{key}: {shown}{context}"
        assert statuses[-1] == "succeeded" and statuses.count("succeeded") == 1, f"{key}: {shown}{context}"
        failed = [a for a in step_attempts if a["status"] == "failed"]
        run_id, _, step = key.rpartition(":")
        if step == "b" and run_id in flaky_runs:
            # The team's code failed it once. Its report is the failed attempt, unless it was
            # lost with a crash: then that attempt's lease ran out (below).
            assert (ledger.root / "failed" / key).exists(), f"{key}: {shown}{context}"
            assert [a["error"]["type"] for a in failed] in (["Flaky"], []), f"{key}: {shown}{context}"
            assert failed or "timed_out" in statuses, f"{key}: {shown}{context}"
        else:
            assert failed == [], f"{key}: {shown}{context}"
        # A task given back before its agent got it (a poll that ended first, e.g. on a replica
        # stopping): a new attempt at once, not a failure.
        released = [
            a
            for a in step_attempts[:-1]
            if a["status"] == "cancelled"
            and a["error"]["type"] == "Released"
            and a["attempt_id"] not in handed
        ]
        # Anything else before the success: a heartbeat lease that ran out across a crash (a
        # task the crash took between its claim and the agent, or a report lost with it).
        others = [a for a in step_attempts[:-1] if a["status"] != "failed" and a not in released]
        assert all(
            a["status"] == "timed_out"
            and a["error"]["type"] == "HeartbeatTimeout"
            and any(a["started_ms"] <= crash <= a["finished_ms"] for crash in crashes_ms or [])
            for a in others
        ), f"{key}: {shown}, crashes at {crashes_ms}{context}"
        counts["released"] += len(released)
        counts["timed_out"] += len(others)
        counts["timed_out_delivered"] += sum(1 for a in others if a["attempt_id"] in handed)
        # Delivered again only after a failure or a timeout of an earlier attempt.
        raw = sum(1 for d in deliveries if d["key"] == key)
        assert raw <= len(step_attempts), f"{key}: {raw} deliveries of {shown}{context}"

    # Each run's result is the one side effect applied per step, chained through the teams.
    refs = {a["key"]: a["ref"] for a in applied}
    for run_id in run_ids:
        order = runs[run_id]["input"]["order_id"]
        a, b, c = (refs[f"{run_id}:{step}"] for step in STEPS)
        assert a.startswith(f"{order}>a#") and b.startswith(f"{a}>b#") and c.startswith(f"{b}>c#"), (
            f"{run_id}: {a} {b} {c}{context}"
        )
        assert runs[run_id]["output"] == {"a": a, "b": b, "c": c}, f"{run_id}{context}"

    assert (timers_left, offers_left) == (0, 0), (
        f"left behind: {timers_left} timers, {offers_left} offers{context}"
    )
    return dict(counts)


# ---------- the tests ----------


class History:
    """What a test did to the replicas, each at its second since the test began (for messages)."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.events: list[str] = []

    def note(self, text: str) -> None:
        self.events.append(f"{time.monotonic() - self.began:.1f}s {text}")

    def __str__(self) -> str:
        return "; ".join(self.events)


@pytest.mark.parametrize("count", [2, 3], ids=["2-replicas", "3-replicas"])
@sized("runs, kills", short=(30, 2), soak=(300, 8))
async def test_replicas_killed_one_after_another_lose_and_double_nothing(
    pg_database: TestDatabase, tmp_path: Path, count: int, runs: int, kills: int
) -> None:
    """kill -9 of a replica at a random moment, then of another (of two replicas: the first is
    started again before the second is killed; of three, two are down at once): every run
    finishes, each side effect once.

    The runs are started in batches, one more than the kills, each through the address lists
    while the replicas are as the kill before it left them; each kill comes at a random point of
    its batch's side effects, so that it has work done before it and work in flight."""
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    url = pg_database.schema_url()
    replicas = Replicas.start(tmp_path, url, count)
    chain = Chain(replicas, tmp_path / "chain")
    history = History()

    def context() -> str:
        return f"\n(seed {seed}: {history})\n{replicas.logs()}\n{chain.agent_logs()}"

    try:
        await chain.set_up()
        history.note("set up")
        bounds = [runs * i // (kills + 1) for i in range(kills + 2)]
        run_ids: list[str] = []
        killed: list[int] = []
        crashes_ms: list[int] = []
        for batch in range(kills + 1):
            alive = replicas.alive()
            if batch < kills and len(alive) == 1:
                # One replica keeps serving: the one down longest comes back before the next kill.
                back = next(n for n in killed if n not in alive)
                await asyncio.to_thread(replicas.restart, back)
                history.note(f"restarted {back}")
            before = chain.ledger.applied_count()
            numbers = range(bounds[batch], bounds[batch + 1])
            run_ids += await chain.start_runs(numbers)
            history.note(f"started o{numbers.start}..o{numbers.stop - 1}")
            if batch == kills:
                break
            point = before + int(rng.uniform(0.15, 0.7) * len(numbers) * len(STEPS)) + 1
            await wait_until(
                lambda point=point: chain.ledger.applied_count() >= point,  # type: ignore[misc]
                f"{point} side effects applied{context()}",
                CRASH_POINT_WITHIN,
            )
            alive = replicas.alive()
            victim = rng.choice([n for n in alive if not killed or n != killed[-1]])
            replicas[victim].kill9()
            crashes_ms.append(int(time.time() * 1000))
            done = chain.ledger.applied_count()
            history.note(f"killed {victim} at {done} side effects")
            killed.append(victim)
            assert done < bounds[batch + 1] * len(STEPS), (
                f"the crash came too late to test anything{context()}"
            )
        await wait_all_finished(url, context)
        history.note("all done")
        counts = check_chain(url, chain.ledger, run_ids, context(), crashes_ms)
        print(f"seed {seed}: {history}; {counts}")
    finally:
        await asyncio.to_thread(chain.stop_agents)
        replicas.kill_all()


@pytest.mark.parametrize("protocol", ["v1", "v2"])
@sized("runs, rounds", short=(30, 1), soak=(300, 3))
async def test_a_rolling_restart_of_every_replica_under_load_loses_and_doubles_nothing(
    pg_database: TestDatabase, tmp_path: Path, runs: int, rounds: int, protocol: str
) -> None:
    """Each of three replicas in turn is stopped (SIGTERM: a clean exit) and started again
    (``rounds`` times over), while runs keep being started through the address lists (at least
    ``runs`` of them, and until the last replica is back) and the teams' agents move from replica
    to replica: every run finishes, each side effect once, and no heartbeat lease runs out
    (nothing was crashed)."""
    url = pg_database.schema_url()
    replicas = Replicas.start(tmp_path, url, 3)
    chain = Chain(replicas, tmp_path / "chain", protocol)
    history = History()
    restarted = asyncio.Event()

    def context() -> str:
        return f"\n({history})\n{replicas.logs()}\n{chain.agent_logs()}"

    def finished_runs() -> int:
        return sum(1 for a in chain.ledger.applied() if a["key"].endswith(":c"))

    run_ids: list[str] = []

    async def load() -> None:
        """Start runs one by one, at most IN_FLIGHT unfinished at a time."""
        i = 0
        while i < runs or not restarted.is_set():
            await wait_until(
                lambda: asyncio.to_thread(lambda: len(run_ids) - finished_runs() < IN_FLIGHT),
                f"fewer than {IN_FLIGHT} runs going{context()}",
                CRASH_POINT_WITHIN,
            )
            run_ids.append(await chain.start_run(i))
            i += 1

    try:
        await chain.set_up()
        history.note("set up")
        starting = asyncio.create_task(load())
        try:
            for n in [n for _ in range(rounds) for n in range(len(replicas))]:
                # Work flows before each stop (and after the restart before it).
                point = chain.ledger.applied_count() + IN_FLIGHT
                await wait_until(
                    # The load stopping (it raised) ends the wait too: its error is the failure.
                    lambda point=point: chain.ledger.applied_count() >= point or starting.done(),  # type: ignore[misc]
                    f"{point} side effects applied{context()}",
                    CRASH_POINT_WITHIN,
                )
                if starting.done():
                    starting.result()  # raises what stopped the load
                    raise AssertionError(f"the load ended before every replica was restarted{context()}")
                code = await asyncio.to_thread(replicas.terminate, n)
                history.note(f"stopped {n} (exit {code}) at {chain.ledger.applied_count()} side effects")
                assert code == 0, f"replica {n} exited with {code} on SIGTERM{context()}"
                await asyncio.to_thread(replicas.start_again, n)
                history.note(f"started {n} again")
            restarted.set()
            await starting
        finally:
            starting.cancel()
        history.note("all started")
        await wait_all_finished(url, context)
        history.note("all done")
        counts = check_chain(url, chain.ledger, run_ids, context())
        print(f"{len(run_ids)} runs: {history}; {counts}")
    finally:
        await asyncio.to_thread(chain.stop_agents)
        replicas.kill_all()
