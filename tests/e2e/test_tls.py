"""TLS and mutual TLS between real coordinator processes and real clients (the CLI, agents).

Certificates are made in each test with ``openssl`` (``tests/support/tls.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.channels import TlsSettings
from contracts.errors import TlsError
from coordinator.client import AsyncClient
from team_agent.testing import AgentProcess
from tests.support.coordinator import ACCORD, CoordinatorProcess, coordinator_env
from tests.support.tls import Certificates, serial_of, served_serial
from tests.support.wait import wait_until

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates.make(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def mutual(tmp_path_factory: pytest.TempPathFactory, certs: Certificates) -> Iterator[CoordinatorProcess]:
    """A coordinator serving mutual TLS: clients need a certificate of ``certs.ca``."""
    coordinator = CoordinatorProcess.start(
        tmp_path_factory.mktemp("mutual"), *certs.server_args(mutual=True), client_env=certs.client_env()
    )
    yield coordinator
    coordinator.stop()


@pytest.fixture(scope="module")
def plaintext(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordinatorProcess]:
    coordinator = CoordinatorProcess.start(tmp_path_factory.mktemp("plaintext"))
    yield coordinator
    coordinator.stop()


def cli(coordinator: CoordinatorProcess, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``accord ARGS`` with the admin token and exactly the ACCORD_TLS_* of ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ACCORD_TLS")}
    return subprocess.run(
        [ACCORD, *args],
        env={
            **base,
            "ACCORD_HOME": str(coordinator.home),
            "ACCORD_COORDINATOR": coordinator.address,
            "ACCORD_TOKEN": coordinator.admin_token,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line_error(result: subprocess.CompletedProcess[str], exit_code: int) -> str:
    """The single line a refused CLI call prints (no traceback, no gRPC log lines)."""
    assert result.returncode == exit_code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


async def test_mutual_tls_serves_a_client_with_a_certificate_of_its_ca(
    mutual: CoordinatorProcess, certs: Certificates
) -> None:
    created = cli(mutual, "team", "create", "mtls-ok", env=certs.client_env())
    assert created.returncode == 0, created.stderr
    listed = cli(mutual, "team", "list", env=certs.client_env())
    assert listed.returncode == 0 and "mtls-ok" in listed.stdout, listed.stderr
    async with mutual.client() as client:  # coordinator.client.AsyncClient over mTLS
        answer = await client.coordinator.ListTeams(pb.ListTeamsRequest())
    assert "mtls-ok" in {team.name for team in answer.teams}


async def test_mutual_tls_refuses_a_client_without_a_certificate(
    mutual: CoordinatorProcess, certs: Certificates
) -> None:
    line = one_line_error(cli(mutual, "team", "list", env=certs.client_env(cert=False)), 3)
    assert line == (
        f"error: the coordinator at {mutual.address} asks for a client certificate (mutual TLS) and"
        " this client has none: set ACCORD_TLS_CERT and ACCORD_TLS_KEY to a certificate signed by the"
        " CA the coordinator trusts"
    )


async def test_mutual_tls_refuses_a_certificate_of_another_ca(
    mutual: CoordinatorProcess, certs: Certificates
) -> None:
    stranger = {
        "ACCORD_TLS_CA": str(certs.ca),
        "ACCORD_TLS_CERT": str(certs.stranger_cert),
        "ACCORD_TLS_KEY": str(certs.stranger_key),
    }
    line = one_line_error(cli(mutual, "team", "list", env=stranger), 3)
    assert line == (
        f"error: the coordinator at {mutual.address} refused this client's certificate"
        f" ({certs.stranger_cert}): it accepts only certificates signed by the CA it trusts"
        " (its --tls-client-ca)"
    )
    # The same from the library: a TlsError, never a raw gRPC error.
    settings = TlsSettings.from_env(stranger)
    async with AsyncClient(mutual.address, mutual.admin_token, tls=settings) as client:
        with pytest.raises(TlsError, match="refused this client's certificate"):
            await client.coordinator.ListTeams(pb.ListTeamsRequest())


async def test_a_plaintext_client_at_a_tls_coordinator_is_told_so_in_one_line(
    mutual: CoordinatorProcess,
) -> None:
    line = one_line_error(cli(mutual, "team", "list", env={}), 3)
    assert line == (
        f"error: the coordinator at {mutual.address} speaks TLS and this client plaintext: set"
        " ACCORD_TLS_CA to the CA file that signed its certificate (or ACCORD_TLS=1 to trust the"
        " system's CAs)"
    )


async def test_a_tls_client_at_a_plaintext_coordinator_is_told_so_in_one_line(
    plaintext: CoordinatorProcess, certs: Certificates
) -> None:
    line = one_line_error(cli(plaintext, "team", "list", env=certs.client_env()), 3)
    assert line == (
        f"error: the coordinator at {plaintext.address} speaks plaintext and this client TLS: unset"
        " ACCORD_TLS and ACCORD_TLS_CA, or start the coordinator with --tls-cert and --tls-key"
    )


async def test_a_coordinator_certificate_of_another_ca_or_name_is_told_so(
    mutual: CoordinatorProcess, certs: Certificates
) -> None:
    untrusted = {**certs.client_env(), "ACCORD_TLS_CA": str(certs.stranger_ca)}
    line = one_line_error(cli(mutual, "team", "list", env=untrusted), 3)
    assert f"the coordinator at {mutual.address} has a certificate this client does not trust" in line
    assert "set ACCORD_TLS_CA to the CA file that signed it" in line
    renamed = {**certs.client_env(), "ACCORD_TLS_SERVER_NAME": "elsewhere.accord.test"}
    line = one_line_error(cli(mutual, "team", "list", env=renamed), 3)
    assert "is not for 'elsewhere.accord.test'" in line and "ACCORD_TLS_SERVER_NAME" in line
    # A name the certificate has is accepted in place of the address's host.
    named = {**certs.client_env(), "ACCORD_TLS_SERVER_NAME": "localhost"}
    assert cli(mutual, "team", "list", env=named).returncode == 0


async def test_a_client_fails_over_to_the_next_coordinator_over_tls(
    mutual: CoordinatorProcess, certs: Certificates, tmp_path: Path
) -> None:
    # Nothing listens on the first address (a port just freed): the client moves on to the next.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        gone = f"127.0.0.1:{sock.getsockname()[1]}"
    result = cli(
        mutual, "team", "list", env={**certs.client_env(), "ACCORD_COORDINATOR": f"{gone},{mutual.address}"}
    )
    assert result.returncode == 0, result.stderr
    assert f"the coordinator at {gone} stopped answering" in result.stderr


def _start(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [ACCORD, "coordinator", "start", *args],
        env=coordinator_env(home, **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--listen", "0.0.0.0:0", "--ui", "off"],
        ["--listen", "127.0.0.1:0", "--ui", "0.0.0.0:0"],
    ],
    ids=["grpc", "ui"],
)
async def test_plaintext_on_a_non_loopback_address_is_refused(args: list[str], tmp_path: Path) -> None:
    home = tmp_path / "home"
    process = _start(home, *args)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2, stderr
    option = "--ui" if args[2:] == ["--ui", "0.0.0.0:0"] else "--listen"
    assert stderr.strip() == (
        f"error: {option} 0.0.0.0:0: not a loopback address, and without TLS tokens and payloads"
        " would cross the network in clear; give --tls-cert FILE --tls-key FILE (docs/production.md,"
        " TLS), or --insecure to serve plaintext anyway (a private network, a TLS proxy in front)"
    )
    assert not (home / "admin.token").exists()  # refused before anything was made


async def test_insecure_serves_plaintext_off_loopback_with_a_warning(tmp_path: Path) -> None:
    coordinator = CoordinatorProcess(
        home=tmp_path / "home", listen="0.0.0.0:0", extra_env={"ACCORD_INSECURE": "1"}
    )
    coordinator._launch()
    try:
        assert "serving --listen 0.0.0.0:0 in plaintext (--insecure)" in coordinator.log()
        port = coordinator.address.rsplit(":", 1)[1]
        coordinator.address = f"127.0.0.1:{port}"
        async with coordinator.client() as client:
            await client.coordinator.ListTeams(pb.ListTeamsRequest())
    finally:
        coordinator.stop()


async def test_tls_serves_a_non_loopback_address(tmp_path: Path, certs: Certificates) -> None:
    coordinator = CoordinatorProcess(
        home=tmp_path / "home",
        listen="0.0.0.0:0",
        extra_args=certs.server_args(),
        client_env=certs.client_env(),
    )
    coordinator._launch()
    try:
        assert "--insecure" not in coordinator.log()
        coordinator.address = f"127.0.0.1:{coordinator.address.rsplit(':', 1)[1]}"
        async with coordinator.client() as client:
            await client.coordinator.ListTeams(pb.ListTeamsRequest())
    finally:
        coordinator.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--tls-cert", "{cert}"],
            "error: --tls-cert needs --tls-key: give the certificate and its private key",
        ),
        (
            ["--tls-client-ca", "{ca}"],
            "error: --tls-client-ca turns on mutual TLS, which needs TLS: give --tls-cert FILE and"
            " --tls-key FILE too",
        ),
        (["--tls-cert", "{cert}", "--tls-key", "{missing}"], "error: --tls-key {missing}: cannot read it: "),
        (
            ["--tls-cert", "{cert}", "--tls-key", "{other_key}"],
            "error: --tls-cert {cert} and --tls-key {other_key}: not a PEM certificate and its private key",
        ),
    ],
    ids=["cert-without-key", "client-ca-without-cert", "unreadable-key", "key-of-another-cert"],
)
async def test_unusable_tls_files_are_refused_naming_the_file(
    args: list[str], message: str, tmp_path: Path, certs: Certificates
) -> None:
    names = {
        "cert": str(certs.server_cert),
        "ca": str(certs.ca),
        "missing": str(tmp_path / "nowhere.key"),
        "other_key": str(certs.client_key),
    }
    home = tmp_path / "home"
    process = _start(home, "--listen", "127.0.0.1:0", "--ui", "off", *[a.format(**names) for a in args])
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2, stderr
    assert stderr.strip().startswith(message.format(**names)), stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert not (home / "admin.token").exists()


async def test_a_replaced_certificate_is_served_without_a_restart(tmp_path: Path) -> None:
    certs = Certificates.make(tmp_path / "tls")
    coordinator = CoordinatorProcess.start(
        tmp_path / "home",
        *certs.server_args(mutual=True),
        "--ui",
        "127.0.0.1:0",
        client_env=certs.client_env(),
    )
    try:
        ui = json.loads((coordinator.home / "coordinator.json").read_text())["ui"]
        first = serial_of(certs.server_cert)

        def serials() -> tuple[int, int]:
            grpc_serial = served_serial(
                coordinator.address, certs.ca, cert=certs.client_cert, key=certs.client_key
            )
            return grpc_serial, served_serial(ui, certs.ca)

        assert serials() == (first, first)
        second = certs.replace_server_certificate()
        assert second != first
        # The next connection (no waiting: the files are looked at by each handshake) gets it.
        assert serials() == (second, second)
        async with coordinator.client() as client:  # a new channel: the CLI's calls keep working
            await client.coordinator.ListTeams(pb.ListTeamsRequest())
        assert "TLS certificate reloaded" in coordinator.log()
        # A broken file (a deployment caught half-way) keeps the certificate in use, with a warning.
        certs.server_cert.write_text("not a certificate\n")
        assert serials() == (second, second)
        await wait_until(
            lambda: "TLS files changed but cannot be used yet" in coordinator.log(), "the warning is logged"
        )
        third = certs.replace_server_certificate()
        assert serials() == (third, third)
    finally:
        coordinator.stop()


# ---------- agents


def _agent_config(coordinator: CoordinatorProcess, team: str, **top: object) -> str:
    return yaml.safe_dump(
        {
            "team": team,
            "coordinator": coordinator.address,
            "token": "${secret:ACCORD_TOKEN}",
            **top,
            "implements": {f"{team}/work@1": {"engine": "shell", "with": {"command": ["cat"]}}},
        },
        sort_keys=False,
    )


async def _refused_agent(
    coordinator: CoordinatorProcess, tmp_path: Path, config: str, env: dict[str, str]
) -> str:
    path = tmp_path / "agent.yaml"
    path.write_text(config)
    clean = {k: "" for k in os.environ if k.startswith("ACCORD_TLS")}
    agent = AgentProcess(path, workdir=tmp_path, env={"ACCORD_TOKEN": "not-checked", **clean, **env})
    agent.start()
    assert agent.wait(timeout=60) == 3, agent.log
    return agent.log


async def test_a_plaintext_agent_at_a_tls_coordinator_stops_with_one_line(
    mutual: CoordinatorProcess, tmp_path: Path
) -> None:
    log = await _refused_agent(mutual, tmp_path, _agent_config(mutual, "tlsteam"), {})
    assert (
        f"error: the coordinator at {mutual.address} speaks TLS and this client plaintext: set"
        " ACCORD_TLS_CA to the CA file that signed its certificate" in log
    ), log
    assert "Traceback" not in log


async def test_a_tls_agent_at_a_plaintext_coordinator_stops_with_one_line(
    plaintext: CoordinatorProcess, certs: Certificates, tmp_path: Path
) -> None:
    config = _agent_config(plaintext, "tlsteam", tls={"ca": str(certs.ca)})
    log = await _refused_agent(plaintext, tmp_path, config, {})
    assert (
        f"error: the coordinator at {plaintext.address} speaks plaintext and this client TLS: unset"
        f" the tls: section of {tmp_path / 'agent.yaml'}, or start the coordinator with --tls-cert"
        " and --tls-key" in log
    ), log
    assert "Traceback" not in log
