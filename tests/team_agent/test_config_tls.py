"""The agent config's ``tls:`` section: checked at load (file, line, field), else ACCORD_TLS_*."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.errors import FileProblemsError
from team_agent.config import parse_config
from tests.support.tls import Certificates

BASE = """\
team: payments
coordinator: coordinator.internal:7440
token: t
implements:
  payments/refund@1: {engine: shell, with: {command: ["true"]}}
"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates.make(tmp_path_factory.mktemp("tls"))


def _problems(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(FileProblemsError) as caught:
        parse_config(text, "agent.yaml", environ=environ or {}, build_adapters=False)
    return [str(p) for p in caught.value.problems]


def test_without_a_tls_section_the_agent_dials_plaintext() -> None:
    tls = parse_config(BASE, "agent.yaml", environ={}, build_adapters=False).config.tls
    assert not tls.enabled


def test_the_tls_section_with_paths_from_secrets(certs: Certificates) -> None:
    text = BASE + (
        "tls:\n"
        f"  ca: {certs.ca}\n"
        '  cert: "${secret:TLS_CERT}"\n'
        '  key: "${secret:TLS_KEY}"\n'
        "  server_name: coordinator.accord.test\n"
    )
    environ = {"TLS_CERT": str(certs.client_cert), "TLS_KEY": str(certs.client_key)}
    # The env secrets provider reads the process's environment.
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environ.items():
            patch.setenv(name, value)
        tls = parse_config(text, "agent.yaml", environ={}, build_adapters=False).config.tls
    assert tls.enabled and tls.origin == "agent.yaml"
    assert (tls.ca, tls.cert, tls.key, tls.server_name) == (
        str(certs.ca),
        str(certs.client_cert),
        str(certs.client_key),
        "coordinator.accord.test",
    )


def test_an_empty_tls_section_trusts_the_system_cas() -> None:
    tls = parse_config(BASE + "tls: {}\n", "agent.yaml", environ={}, build_adapters=False).config.tls
    assert tls.enabled and tls.ca == ""


def test_without_a_section_the_environment_decides(certs: Certificates) -> None:
    environ = {"ACCORD_TLS_CA": str(certs.ca), "ACCORD_TLS_SERVER_NAME": "localhost"}
    tls = parse_config(BASE, "agent.yaml", environ=environ, build_adapters=False).config.tls
    assert tls.enabled and tls.ca == str(certs.ca) and tls.server_name == "localhost" and tls.origin == "env"
    assert _problems(BASE, {"ACCORD_TLS": "maybe"}) == [
        "agent.yaml:1: tls: no tls: section, and the environment's is wrong:"
        " ACCORD_TLS='maybe': expected 1 (TLS) or 0 (plaintext)"
    ]


def test_every_problem_of_the_section_is_named_with_its_line(certs: Certificates, tmp_path: Path) -> None:
    text = BASE + (f"tls:\n  ca: {tmp_path / 'missing.pem'}\n  cert: {certs.client_cert}\n  port: 1\n")
    assert _problems(text) == [
        "agent.yaml:6: tls.key: missing: tls.cert is set, so tls.key must be too",
        f"agent.yaml:7: tls.ca: {tmp_path / 'missing.pem'}: cannot read it: No such file or directory",
        "agent.yaml:9: tls.port: unknown field (expected one of: ca, cert, key, server_name)",
    ]


def test_a_key_that_is_not_the_certificates_is_refused(certs: Certificates) -> None:
    text = BASE + f"tls:\n  cert: {certs.client_cert}\n  key: {certs.stranger_key}\n"
    [problem] = _problems(text)
    assert problem.startswith(
        f"agent.yaml:8: tls.key: {certs.stranger_key} is not the private key of {certs.client_cert}"
    )
