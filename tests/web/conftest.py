"""Fixtures of the web UI tests."""

from __future__ import annotations

import sys
from pathlib import Path

# Make ``tests.web...`` importable however pytest was started (as tests/engines/conftest does).
_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))
