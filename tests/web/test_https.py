"""A three-team run over mutual TLS end to end: the CLI, real agents, and the UI over HTTPS in a
real Chromium that trusts the test's CA (through its profile's NSS database: no certificate error
is ignored, a page of an untrusted certificate would not load at all).

Also the sign-in redirect: ``next`` is followed only where the browser's own URL parser puts it
on the UI's origin.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from team_agent.testing import AgentProcess
from tests.support.coordinator import CoordinatorProcess
from tests.support.tls import Certificates
from tests.support.wait import wait_until
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.asyncio]

Page = Any  # playwright.async_api.Page
TEAMS = ("payments", "warehouse", "shipping")
CONTRACTS = {
    "payments": """
        contract: payments/charge
        version: 1.0.0
        input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
        output: {type: object, required: [payment_ref], properties: {payment_ref: {type: string}}}
    """,
    "warehouse": """
        contract: warehouse/reserve
        version: 1.0.0
        input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
        output: {type: object, required: [items], properties: {items: {type: array}}}
    """,
    "shipping": """
        contract: shipping/ship
        version: 1.0.0
        input:
          type: object
          required: [order_id, payment_ref, items]
          properties: {order_id: {type: string}, payment_ref: {type: string}, items: {type: array}}
        output: {type: object, required: [shipment_id], properties: {shipment_id: {type: string}}}
    """,
}
WORKFLOW = """
    workflow: shipping/order
    input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
    steps:
      charge: {contract: payments/charge@^1, input: {order_id: "${input.order_id}"}}
      reserve: {contract: warehouse/reserve@^1, input: {order_id: "${input.order_id}"}}
      ship:
        contract: shipping/ship@^1
        input:
          order_id: "${input.order_id}"
          payment_ref: "${steps.charge.output.payment_ref}"
          items: "${steps.reserve.output.items}"
    output: "${steps.ship.output}"
"""
# What each team's engine answers (a shell command reading the input on stdin).
ANSWERS = {
    "payments/charge": "{'payment_ref': 'pay-' + data['order_id']}",
    "warehouse/reserve": "{'items': [{'sku': 'sku-1'}]}",
    "shipping/ship": "{'shipment_id': 'ship-' + data['payment_ref']}",
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates.make(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def coordinator(tmp_path: Path, certs: Certificates) -> Iterator[CoordinatorProcess]:
    process = CoordinatorProcess.start(
        tmp_path / "home",
        *certs.server_args(mutual=True),
        "--ui",
        "127.0.0.1:0",
        client_env=certs.client_env(),
    )
    yield process
    process.stop()


def ui_url(coordinator: CoordinatorProcess) -> str:
    state = json.loads((coordinator.home / "coordinator.json").read_text())
    assert state.get("tls") is True and "ui" in state, state
    return f"https://{state['ui']}"


@pytest.fixture
def trusting_home(certs: Certificates, tmp_path: Path) -> Path:
    """A HOME whose NSS database (what Chromium on Linux trusts) trusts ``certs.ca``."""
    if not os.path.exists(CHROMIUM) or shutil.which("certutil") is None:
        if os.environ.get("CI"):
            pytest.fail("no /usr/bin/chromium or certutil in CI: .ci/install-browser.sh installs both")
        pytest.skip("no /usr/bin/chromium or certutil (libnss3-tools): run .ci/install-browser.sh")
    home = tmp_path / "browser-home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True)
    subprocess.run(
        ["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "accord-test-ca", "-i", str(certs.ca)],
        check=True,
    )
    return home


@pytest_asyncio.fixture
async def trusting_page(trusting_home: Path) -> AsyncIterator[Page]:
    """A page of a real headless Chromium that trusts the test's CA: no certificate error is
    ignored, so a page of a certificate it does not trust would not load."""
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="accord-chromium-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                args=CHROMIUM_ARGS,
                headless=True,
                env={**os.environ, "HOME": str(trusting_home)},
            )
            page = context.pages[0] if context.pages else await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            try:
                yield page
            finally:
                await context.close()
            assert not errors, f"errors in the page: {errors}"


def _agent_config(coordinator: CoordinatorProcess, team: str, certs: Certificates) -> str:
    contract = f"{team}/{ {'payments': 'charge', 'warehouse': 'reserve', 'shipping': 'ship'}[team] }"
    code = f"import json, sys; data = json.load(sys.stdin); print(json.dumps({ANSWERS[contract]}))"
    document: dict[str, Any] = {
        "team": team,
        "coordinator": coordinator.address,
        "token": "${secret:ACCORD_TOKEN}",
        "implements": {
            f"{contract}@1": {"engine": "shell", "with": {"command": [sys.executable, "-c", code]}}
        },
    }
    if team != "warehouse":  # warehouse's agent takes the ACCORD_TLS_* variables instead
        document["tls"] = {"ca": str(certs.ca), "cert": "${secret:TLS_CERT}", "key": "${secret:TLS_KEY}"}
    return yaml.safe_dump(document, sort_keys=False)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


async def test_a_three_team_run_over_mutual_tls_end_to_end(
    coordinator: CoordinatorProcess, certs: Certificates, trusting_page: Page, tmp_path: Path
) -> None:
    # The CLI, over mutual TLS: teams, contracts, the workflow.
    tokens = {team: _ok(await coordinator.acli("team", "create", team)).strip() for team in TEAMS}
    for team, text in CONTRACTS.items():
        path = tmp_path / f"{team}.yaml"
        path.write_text(textwrap.dedent(text))
        _ok(await coordinator.acli("contract", "register", str(path), token=tokens[team]))
    workflow = tmp_path / "order.yaml"
    workflow.write_text(textwrap.dedent(WORKFLOW))
    _ok(await coordinator.acli("workflow", "register", str(workflow), token=tokens["shipping"]))

    # Real agents, over mutual TLS: two from their config's tls: section (paths from secrets),
    # one from the ACCORD_TLS_* variables.
    clean = {k: "" for k in os.environ if k.startswith("ACCORD_TLS")}
    agents = []
    for team in TEAMS:
        config = tmp_path / f"{team}-agent.yaml"
        config.write_text(_agent_config(coordinator, team, certs))
        env = {**clean, "ACCORD_TOKEN": tokens[team]}
        if team == "warehouse":
            env |= certs.client_env()
        else:
            env |= {"TLS_CERT": str(certs.client_cert), "TLS_KEY": str(certs.client_key)}
        agents.append(AgentProcess(config, workdir=tmp_path / f"{team}-agent", env=env).start())
    try:
        for agent in agents:
            await agent.wait_for_log("registered")
        output = _ok(
            await coordinator.acli(
                "run", "shipping/order", "--input", '{"order_id": "o-7"}', "--wait", token=tokens["shipping"]
            )
        )
        assert json.loads(output) == {"shipment_id": "ship-pay-o-7"}
        listed = _ok(await coordinator.acli("runs", "list", "--json", token=tokens["shipping"]))
        [run] = json.loads(listed)
        assert run["status"] == "succeeded", run
        run_id = run["run_id"]

        # The agents' own spans reach the coordinator over the same mutual TLS (OTLP/gRPC).
        async def agent_teams() -> set[str]:
            trace = json.loads(_ok(await coordinator.acli("runs", "trace", run_id, "--json")))
            return {
                attribute["value"]["stringValue"]
                for resource in trace["resourceSpans"]
                if any(
                    a["key"] == "service.name" and a["value"].get("stringValue") == "accord-agent"
                    for a in resource["resource"]["attributes"]
                )
                for attribute in resource["resource"]["attributes"]
                if attribute["key"] == "accord.team"
            }

        async def every_agent_traced() -> bool:
            return await agent_teams() == set(TEAMS)

        await wait_until(every_agent_traced, "a span of every team's agent in the run's trace", within=60)

        # The UI over HTTPS, in a browser that trusts the CA, signed in through the open
        # redirect's payload: the browser stays on the UI.
        page = trusting_page
        base = ui_url(coordinator)
        response = await page.goto(f"{base}/signin?next=%2F%09%2Fevil.example%2Fphish")
        assert response is not None and response.ok
        assert "default-src 'self'" in (await response.all_headers())["content-security-policy"]
        assert await page.evaluate("location.protocol") == "https:"
        await page.fill("#token", tokens["shipping"])
        await page.click("#signin-submit")
        await page.wait_for_url(f"{base}/runs")
        [cookie] = [c for c in await page.context.cookies() if c["name"] == "accord_session"]
        assert (cookie["secure"], cookie["httpOnly"], cookie["sameSite"]) == (True, True, "Strict")
        await page.locator(f'#runs-table tr[data-run-id="{run_id}"]').wait_for()
        await page.goto(f"{base}/runs/{run_id}")
        await page.locator(".node").first.wait_for()
        teams = {await n.get_attribute("data-team") for n in await page.locator(".node").all()}
        assert teams == set(TEAMS)
    finally:
        for agent in agents:
            agent.stop()


# The exact payload of the report, and the other ways a parser reads a path as another origin.
REDIRECTS = [
    "/\t/evil.example/phish",
    "/\n/evil.example/phish",
    "/\r/evil.example/phish",
    "/\t\\evil.example",
    "/\\evil.example",
    "\\/evil.example",
    "//evil.example",
    "///evil.example",
    "https://evil.example/",
    "javascript:alert(1)",
    "data:text/html,hi",
    " /\t/evil.example",
]


async def test_sign_in_follows_next_only_on_its_own_origin(
    coordinator: CoordinatorProcess, trusting_page: Page
) -> None:
    page = trusting_page
    base = ui_url(coordinator)
    await page.goto(f"{base}/signin")
    targets = await page.evaluate(
        "async (cases) => { const m = await import('/static/dom.js'); return cases.map((c) => m.sameOriginUrl(c)); }",
        [*REDIRECTS, "/runs/r-1?tab=trace#x", "/contracts/payments/charge"],
    )
    *refused, kept, other = targets
    assert refused == [f"{base}/runs"] * len(REDIRECTS), list(zip(REDIRECTS, refused, strict=True))
    assert (kept, other) == (f"{base}/runs/r-1?tab=trace#x", f"{base}/contracts/payments/charge")
    # A path that parses to "//host" stays a path of this origin (the answer is absolute).
    assert (
        await page.evaluate("async () => (await import('/static/dom.js')).sameOriginUrl('/.//evil.example')")
        == f"{base}//evil.example"
    )
