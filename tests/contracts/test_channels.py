"""contracts.channels: TLS settings from the environment, and what a failed handshake says.

The handshakes themselves (a real coordinator with and without TLS, mutual TLS) are in
tests/e2e/test_tls.py.
"""

from __future__ import annotations

import grpc
import pytest

from contracts.channels import Channels, TlsSettings
from contracts.errors import InvalidArgumentError, TlsError, UnreachableError
from tests.support.tls import Certificates


class _FailedCall(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates.make(tmp_path_factory.mktemp("tls"))


def test_no_variable_is_plaintext() -> None:
    assert TlsSettings.from_env({}) == TlsSettings()
    assert not Channels(TlsSettings.from_env({"ACCORD_TLS": "0"})).tls.enabled


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_accord_tls_turns_on_tls_with_the_systems_cas(value: str) -> None:
    channels = Channels(TlsSettings.from_env({"ACCORD_TLS": value}))
    assert channels.tls.enabled and channels.tls.ca == "" and channels.credentials is not None


def test_a_ca_file_turns_on_tls(certs: Certificates) -> None:
    tls = TlsSettings.from_env({"ACCORD_TLS_CA": str(certs.ca), "ACCORD_TLS_SERVER_NAME": "localhost"})
    assert tls.enabled and tls.ca == str(certs.ca)
    assert Channels(tls).options([("a", 1)]) == [
        ("a", 1),
        ("grpc.max_receive_message_length", -1),  # no receive limit of the client's own
        ("grpc.ssl_target_name_override", "localhost"),
    ]
    assert Channels(tls).options([("grpc.max_receive_message_length", 5)])[:1] == [
        ("grpc.max_receive_message_length", 5)
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ACCORD_TLS": "maybe"}, "ACCORD_TLS='maybe': expected 1 (TLS) or 0 (plaintext)"),
        ({"ACCORD_TLS_CA": "/no/such/ca.pem"}, "ACCORD_TLS_CA: /no/such/ca.pem: cannot read it: "),
        (
            {"ACCORD_TLS": "1", "ACCORD_TLS_CERT": "{client_cert}"},
            "ACCORD_TLS_KEY: missing: ACCORD_TLS_CERT is set, so ACCORD_TLS_KEY must be too",
        ),
        (
            {"ACCORD_TLS": "1", "ACCORD_TLS_CERT": "{client_cert}", "ACCORD_TLS_KEY": "{stranger_key}"},
            "ACCORD_TLS_KEY: {stranger_key} is not the private key of {client_cert}",
        ),
        ({"ACCORD_TLS_CA": "{client_key}"}, "ACCORD_TLS_CA: {client_key}: not a PEM certificate file"),
    ],
    ids=["bad-flag", "missing-ca", "cert-without-key", "key-of-another", "ca-not-a-certificate"],
)
def test_unusable_settings_are_refused_naming_the_variable(
    env: dict[str, str], message: str, certs: Certificates
) -> None:
    names = {
        "client_cert": str(certs.client_cert),
        "client_key": str(certs.client_key),
        "stranger_key": str(certs.stranger_key),
    }
    with pytest.raises(InvalidArgumentError) as caught:
        Channels(TlsSettings.from_env({k: v.format(**names) for k, v in env.items()}))
    assert str(caught.value).startswith(message.format(**names)), str(caught.value)
    assert caught.value.exit_code == 2


def test_a_plaintext_coordinator_answering_a_tls_client_is_named(certs: Certificates) -> None:
    channels = Channels(TlsSettings.from_env({"ACCORD_TLS_CA": str(certs.ca)}))
    failed = _FailedCall(
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.0.0.5:7440: Tls handshake"
        " failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:100000f7:SSL routines:"
        "OPENSSL_internal:WRONG_VERSION_NUMBER",
    )
    error = channels.error(failed, address="10.0.0.5:7440")
    assert type(error) is TlsError and error.exit_code == 3
    assert str(error) == (
        "the coordinator at 10.0.0.5:7440 speaks plaintext and this client TLS: unset ACCORD_TLS and"
        " ACCORD_TLS_CA, or start the coordinator with --tls-cert and --tls-key"
    )


def test_a_refused_connection_stays_unreachable_and_is_not_looked_at() -> None:
    # Nothing listens there: no TLS question to ask, the usual message (and failover) applies.
    failed = _FailedCall(
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Failed to"
        " connect to remote host: Connection refused",
    )
    error = Channels().error(failed, address="127.0.0.1:1")
    assert type(error) is UnreachableError
    assert str(error).startswith("cannot reach the coordinator at 127.0.0.1:1: ")


def test_other_status_codes_keep_their_error() -> None:
    from contracts.errors import NotFoundError

    error = Channels().error(_FailedCall(grpc.StatusCode.NOT_FOUND, "no run r-1"), address="a:1")
    assert type(error) is NotFoundError and str(error) == "no run r-1"


class _Refused(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, trailing: tuple[tuple[str, str], ...]) -> None:
        self._code, self._trailing = code, trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "the coordinator is overloaded"

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._trailing


def test_an_overload_refusal_is_retried_after_its_hint_until_the_patience_is_spent() -> None:
    from contracts.channels import OverloadRetry
    from contracts.errors import OverloadedError

    refused = _Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, (("retry-after-ms", "400"),))
    retry = OverloadRetry()
    wait = retry.wait(refused)
    assert wait is not None and 0.2 <= wait <= 0.6 and not retry.exhausted
    # Without the hint it is not admission control (e.g. a message too large): not retried.
    bare = _Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, ())
    assert retry.wait(bare) is None and not retry.exhausted
    assert retry.wait(_Refused(grpc.StatusCode.INTERNAL, (("retry-after-ms", "1"),))) is None
    spent = OverloadRetry(patience_s=0.0)
    assert spent.wait(refused) is None and spent.exhausted
    error = spent.error("127.0.0.1:7440")
    assert isinstance(error, OverloadedError) and error.exit_code == 3
    assert str(error).startswith("the coordinator at 127.0.0.1:7440 is overloaded")
