"""Several coordinator addresses: parsing, and moving on to the next one when one fails."""

from __future__ import annotations

import logging

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.endpoints import Endpoints, parse_addresses, with_request_id
from contracts.errors import InvalidArgumentError


def test_one_or_several_addresses_from_text_or_a_list() -> None:
    assert parse_addresses("127.0.0.1:7440") == ["127.0.0.1:7440"]
    assert parse_addresses("a:7440, b:7441 ,a:7440") == ["a:7440", "b:7441"]
    assert parse_addresses(["a:1", "[::1]:2"]) == ["a:1", "[::1]:2"]


@pytest.mark.parametrize("bad", ["", "a", "a:b", "a:7440,nope", ["a:1", 5]])
def test_a_bad_address_is_refused_naming_where_it_came_from(bad: object) -> None:
    with pytest.raises(InvalidArgumentError, match=r"^coordinator: .* is not host:port"):
        parse_addresses(bad, "coordinator")  # type: ignore[arg-type]


def test_a_failed_address_moves_the_client_on_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    made: list[str] = []
    endpoints = Endpoints(["a:1", "b:2"], lambda where: made.append(where) or where)
    assert (endpoints.address, endpoints.current) == ("a:1", "a:1")
    with caplog.at_level(logging.WARNING):
        assert endpoints.failed("a:1", "connection refused")
    assert endpoints.current == "b:2"
    assert "the coordinator at a:1 stopped answering (connection refused); trying b:2" in caplog.text
    assert endpoints.failed("a:1", "late news")  # an older failure does not move it again
    assert endpoints.address == "b:2"
    assert endpoints.failed("b:2", "down") and endpoints.address == "a:1"
    assert made == ["a:1", "b:2"]  # one connection each, made once
    assert not Endpoints(["only:1"], str).failed("only:1", "down")


def test_a_mutating_request_without_an_id_gets_one_on_a_copy_and_one_with_an_id_keeps_it() -> None:
    request = pb.CreateTeamRequest(name="payments")
    filled = with_request_id(request)
    assert len(filled.request_id) == 32 and filled.name == "payments"
    assert request.request_id == ""  # the caller's message is left as it was: sent again, a new request
    assert with_request_id(request).request_id != filled.request_id
    assert with_request_id(filled) is filled  # an id already there is kept (a retry sends it again)
    listed = pb.ListTeamsRequest()
    assert with_request_id(listed) is listed  # a read has no request id
