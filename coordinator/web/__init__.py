"""The tracing UI and its JSON API (docs/ui.md, docs/ui-api.md)."""

from coordinator.web._grpc_source import GrpcSource
from coordinator.web._serve import UiServer, parse_listen, serve_ui
from coordinator.web._sessions import SessionStore
from coordinator.web._source import Principal, RunQuery, Source
from coordinator.web.app import create_app

__all__ = [
    "GrpcSource",
    "Principal",
    "RunQuery",
    "SessionStore",
    "Source",
    "UiServer",
    "create_app",
    "parse_listen",
    "serve_ui",
]
