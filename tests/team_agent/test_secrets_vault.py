"""The ``vault`` secrets provider against the faithful fake of Vault's KV v2, token and AppRole
APIs (tests/fakes/vault_fake.py), through the agent's config loader, and through a real
``accord agent start`` refusing a secret Vault does not have."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from contracts.errors import FileProblemsError
from team_agent.config import parse_config
from team_agent.secrets import SecretLookupError, SecretsConfigError, load_provider
from team_agent.secrets_vault import VaultSecrets, parse_name
from team_agent.testing import AgentProcess
from tests.fakes.server import serve_in_thread
from tests.fakes.vault_fake import FakeVault
from tests.support.wait import wait_until

pytestmark = pytest.mark.xdist_group("vault")

NS = "teams/payments"
STRIPE_KEY = "sk_live_51Hx-vault-secret-value"


@pytest.fixture(scope="module")
def _server() -> Iterator[tuple[FakeVault, str]]:
    fake = FakeVault()
    with serve_in_thread(fake.app) as url:
        yield fake, url


@pytest.fixture
def vault(_server: tuple[FakeVault, str]) -> tuple[FakeVault, str]:
    fake, url = _server
    fake.kv.clear()
    fake.tokens.clear()
    fake.approles.clear()
    fake.requests.clear()
    fake.sealed = False
    fake.logins = fake.renewals = 0
    fake.put("payments/stripe", {"api_key": STRIPE_KEY, "account": "acct_1"}, namespace=NS)
    fake.put("payments/accord", {"token": "accord-team-token"}, namespace=NS)
    return fake, url


def provider(url: str, environ: dict[str, str], **options: Any) -> VaultSecrets:
    made = VaultSecrets({"address": url, "namespace": NS, **options}, environ=environ)
    return made


def test_found_through_the_entry_point(vault: tuple[FakeVault, str], monkeypatch: pytest.MonkeyPatch) -> None:
    fake, url = vault
    monkeypatch.setenv("TEAM_VAULT_TOKEN", fake.add_token(namespace=NS))
    found = load_provider("vault", {"address": url, "namespace": NS, "token_env": "TEAM_VAULT_TOKEN"})
    assert isinstance(found, VaultSecrets) and found.rereadable
    assert found.get("payments/stripe#api_key") == STRIPE_KEY


def test_names() -> None:
    assert parse_name("payments/stripe#api_key") == ("payments/stripe", None, "api_key")
    assert parse_name("payments/stripe@3#api_key") == ("payments/stripe", 3, "api_key")
    assert parse_name("payments/accord") == ("payments/accord", None, None)
    for bad in ("/abs#k", "a//b#k", "p#", "p@x#k", "p#k#k"):
        with pytest.raises(ValueError):
            parse_name(bad)


def test_token_auth_reads_keys_in_the_teams_namespace(vault: tuple[FakeVault, str]) -> None:
    fake, url = vault
    token = fake.add_token(namespace=NS)
    secrets = provider(url, {"VAULT_TOKEN": token})
    assert secrets.get("payments/stripe#api_key") == STRIPE_KEY
    assert secrets.get("payments/accord") == "accord-team-token"  # the only key
    assert ("GET", "/v1/secret/data/payments/stripe", 200) in fake.requests
    with pytest.raises(SecretLookupError) as info:
        secrets.get("payments/stripe")  # two keys: which one?
    assert "has 2 keys (account, api_key); name one: payments/stripe#KEY" in str(info.value)
    assert STRIPE_KEY not in str(info.value)


def test_versions_and_the_cache(vault: tuple[FakeVault, str]) -> None:
    fake, url = vault
    token = fake.add_token(namespace=NS)
    cached = provider(url, {"VAULT_TOKEN": token}, cache_ttl="1h")
    fresh = provider(url, {"VAULT_TOKEN": token}, cache_ttl=0)
    assert cached.get("payments/stripe#account") == "acct_1"
    fake.put("payments/stripe", {"api_key": "rotated", "account": "acct_2"}, namespace=NS)
    reads = sum(1 for _, p, _ in fake.requests if p.endswith("/data/payments/stripe"))
    assert cached.get("payments/stripe#api_key") == STRIPE_KEY  # still the cached version 1
    assert sum(1 for _, p, _ in fake.requests if p.endswith("/data/payments/stripe")) == reads
    assert fresh.get("payments/stripe#api_key") == "rotated"
    assert fresh.get("payments/stripe@1#api_key") == STRIPE_KEY  # ?version=1
    fake.delete("payments/stripe", 1, namespace=NS)
    with pytest.raises(SecretLookupError) as info:
        fresh.get("payments/stripe@1#api_key")
    assert "version 1 of payments/stripe was deleted" in str(info.value)
    # The metadata endpoint lists both versions, the first deleted.
    meta = httpx.get(
        f"{url}/v1/secret/metadata/payments/stripe", headers={"X-Vault-Token": token, "X-Vault-Namespace": NS}
    ).json()["data"]
    assert meta["current_version"] == 2 and meta["versions"]["1"]["deletion_time"]


def test_errors_name_the_secret_and_what_to_do(vault: tuple[FakeVault, str]) -> None:
    fake, url = vault
    limited = fake.add_token(namespace=NS, policies=["secret/payments/accord"])
    secrets = provider(url, {"VAULT_TOKEN": limited})
    with pytest.raises(SecretLookupError) as info:
        secrets.get("payments/stripe#api_key")
    message = str(info.value)
    assert "secret 'payments/stripe#api_key': Vault refused to read secret/data/payments/stripe" in message
    assert "HTTP 403 permission denied" in message and "policy must allow read" in message
    assert limited not in message
    with pytest.raises(SecretLookupError) as info:
        secrets.get("payments/accord#nope")
    assert "payments/accord has no key 'nope' (its keys: token)" in str(info.value)
    with pytest.raises(SecretLookupError) as info:
        secrets.get("payments/accord/missing#x")
    assert "no secret at payments/accord/missing in the KV v2 mount 'secret' in namespace" in str(info.value)
    assert "vault kv put" in str(info.value)
    uncached = provider(url, {"VAULT_TOKEN": limited}, cache_ttl=0)
    fake.sealed = True
    with pytest.raises(SecretLookupError, match="Vault is unavailable \\(HTTP 503 Vault is sealed\\)"):
        uncached.get("payments/accord#token")
    with pytest.raises(SecretsConfigError) as config_error:
        provider(url, {"VAULT_TOKEN": limited})
    assert config_error.value.problems[0][0] == "secrets.address"


def test_agent_start_problems_of_the_secrets_section(vault: tuple[FakeVault, str], tmp_path: Path) -> None:
    fake, url = vault
    token = fake.add_token(namespace="teams/shipping")  # a token of another namespace
    with pytest.raises(SecretsConfigError) as info:
        provider(url, {"VAULT_TOKEN": token})
    ((field, message),) = info.value.problems
    assert field == "secrets.token_env" and "environment variable VAULT_TOKEN" in message
    assert "namespace 'teams/payments' (HTTP 403 permission denied)" in message and token not in message
    with pytest.raises(SecretsConfigError) as info:
        provider(url, {})
    assert info.value.problems == [
        ("secrets.token_env", "the Vault token is missing or empty: set the environment variable VAULT_TOKEN")
    ]
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(SecretsConfigError) as info:
        provider(closed, {"VAULT_TOKEN": token})
    assert (
        info.value.problems[0][0] == "secrets.address" and "could not be reached" in info.value.problems[0][1]
    )
    with pytest.raises(SecretsConfigError) as info:
        VaultSecrets(
            {"auth": "ldap", "cache_ttl": "soon", "colour": 1, "token_file": "/x", "token_env": "Y"},
            environ={},
        )
    assert {f for f, _ in info.value.problems} == {
        "secrets.address",
        "secrets.auth",
        "secrets.cache_ttl",
        "secrets.colour",
    }


def test_approle_logs_in_renews_and_logs_in_again(vault: tuple[FakeVault, str], tmp_path: Path) -> None:
    fake, url = vault
    role = fake.add_approle("accord-agent", namespace=NS, token_ttl=3, token_max_ttl=4)
    (tmp_path / "secret-id").write_text(role.secret_id + "\n")
    secrets = provider(
        url,
        {"ROLE": role.role_id},
        auth="approle",
        role_id_env="ROLE",
        secret_id_file=str(tmp_path / "secret-id"),
        cache_ttl=0,
    )
    assert fake.logins == 1
    assert secrets.get("payments/stripe#api_key") == STRIPE_KEY
    # Two thirds into the 3 s lease the token is renewed; once its 4 s max TTL leaves too little
    # to renew, the provider logs in again. Reads keep working throughout.
    wait_until_sync(lambda: secrets.get("payments/stripe#api_key") == STRIPE_KEY and fake.renewals >= 1, 20)
    wait_until_sync(lambda: secrets.get("payments/stripe#api_key") == STRIPE_KEY and fake.logins >= 2, 20)
    # A wrong secret_id is a problem of the secrets section, naming where it came from.
    (tmp_path / "secret-id").write_text("wrong")
    with pytest.raises(SecretsConfigError) as info:
        provider(
            url,
            {"ROLE": role.role_id},
            auth="approle",
            role_id_env="ROLE",
            secret_id_file=str(tmp_path / "secret-id"),
        )
    ((field, message),) = info.value.problems
    assert field == "secrets.secret_id_file" and "HTTP 400 invalid role or secret ID" in message
    assert role.role_id not in message and "wrong" not in message


def wait_until_sync(condition: Any, within: float) -> None:
    """``tests.support.wait.wait_until`` for this blocking provider."""
    asyncio.run(wait_until(condition, "the condition", within))


def _agent_config(url: str, password: str) -> str:
    return yaml.safe_dump(
        {
            "team": "payments",
            "coordinator": "127.0.0.1:1",
            "token": "${secret:payments/accord#token}",
            "secrets": {"provider": "vault", "address": url, "namespace": NS, "token_env": "VAULT_TOKEN"},
            "implements": {
                "payments/charge-card@1": {
                    "engine": "http",
                    "with": {
                        "url": "http://127.0.0.1:9/charge",
                        "headers": {
                            "Authorization": "Bearer ${secret:payments/stripe#api_key}",
                            "X-Pw": password,
                        },
                    },
                }
            },
        },
        sort_keys=False,
    )


def test_resolved_values_reach_the_redactor_and_problems_name_the_field(
    vault: tuple[FakeVault, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = vault
    token = fake.add_token(namespace=NS)
    monkeypatch.setenv("VAULT_TOKEN", token)  # the provider reads the process environment
    loaded = parse_config(
        _agent_config(url, "${secret:payments/stripe#account}"), "agent.yaml", environ={"VAULT_TOKEN": token}
    )
    assert loaded.config.token == "accord-team-token"
    assert {"accord-team-token", STRIPE_KEY, "acct_1"} <= loaded.config.secret_values
    with pytest.raises(FileProblemsError) as info:
        parse_config(
            _agent_config(url, "${secret:payments/gone#pw}"), "agent.yaml", environ={"VAULT_TOKEN": token}
        )
    (problem,) = info.value.problems
    assert problem.field == "implements.payments/charge-card@1.with.headers.X-Pw" and problem.line is not None
    assert "secret 'payments/gone#pw': no secret at payments/gone" in problem.message


async def test_agent_start_refuses_a_secret_vault_does_not_have(
    vault: tuple[FakeVault, str], tmp_path: Path
) -> None:
    fake, url = vault
    token = fake.add_token(namespace=NS)
    path = tmp_path / "agent.yaml"
    path.write_text(_agent_config(url, "${secret:payments/gone#pw}"))
    agent = AgentProcess(path, workdir=tmp_path, env={"VAULT_TOKEN": token}).start()
    try:
        assert await asyncio.to_thread(agent.wait, 60) == 2
    finally:
        agent.kill()
    log = agent.log
    assert "implements.payments/charge-card@1.with.headers.X-Pw: secret 'payments/gone#pw'" in log, log
    assert "Traceback" not in log
    for value in (token, STRIPE_KEY, "accord-team-token"):
        assert value not in log


def test_a_token_file_is_read_again_when_vault_agent_rotates_it(
    vault: tuple[FakeVault, str], tmp_path: Path
) -> None:
    fake, url = vault
    old = fake.add_token(namespace=NS)
    token_file = tmp_path / "vault-token"
    token_file.write_text(old + "\n")
    secrets = provider(url, {}, token_file=str(token_file), cache_ttl=0)
    assert secrets.get("payments/accord#token") == "accord-team-token"
    new = fake.add_token(namespace=NS)
    token_file.write_text(new)
    del fake.tokens[old]  # revoked
    assert secrets.get("payments/accord#token") == "accord-team-token"
    assert ("GET", "/v1/secret/data/payments/accord", 403) not in fake.requests
