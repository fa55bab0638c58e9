"""The cached virtual environment of the real Prefect 3 server (and worker) the
``@pytest.mark.prefect`` tests start. Standard library only, so that it also runs as a script
under the system's ``python3`` before Accord's own venv exists:

    python3 tests/engines/prefect_venv.py     # build it unless cached (what `make test` starts early)

The agent's ``prefect`` engine speaks Prefect's REST API with httpx and needs no Prefect library;
only the tests need the server. Prefect pins ~100 packages (FastAPI, SQLAlchemy, pydantic...), so
it lives in a venv of its own under ``$ACCORD_TEST_CACHE`` (default ``~/.cache/accord-test``) as
``prefect-<version>``, built under a file lock exactly like the Airflow one (airflow_venv.py): a
session that needs it while ``make test``'s early build still runs waits for it, and a half-built
one is rebuilt. A migrated, empty SQLite database is built once too and copied by every test
server: migrating a fresh one cost a loaded machine 13 s of the server's start.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

try:
    from tests.engines.airflow_venv import cache_root, ensure_cached_venv, locked, run_logged
except ImportError:  # run as a script (python3 tests/engines/prefect_venv.py): its directory is on sys.path
    from airflow_venv import cache_root, ensure_cached_venv, locked, run_logged  # type: ignore[no-redef]

PREFECT_VERSION = "3.9.1"


def ensure_prefect_venv(version: str = PREFECT_VERSION) -> Path:
    """The venv with ``prefect==version``, built on first use and reused after."""
    return ensure_cached_venv(f"prefect-{version}", f"prefect=={version}")


def ensure_db_template(venv: Path, version: str = PREFECT_VERSION) -> Path:
    """A migrated, empty SQLite database of the Prefect server, built once."""
    template = cache_root() / f"prefect-{version}-db-template.sqlite"
    if template.exists():
        return template
    with locked(cache_root() / f"prefect-{version}-db.lock"):
        if template.exists():
            return template
        with tempfile.TemporaryDirectory(prefix="accord-prefect-migrate-") as tmp:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "VIRTUAL_ENV"))}
            db = Path(tmp) / "prefect.db"
            env.update(
                HOME=tmp,
                PREFECT_HOME=str(Path(tmp) / "prefect-home"),
                PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{db}",
                PREFECT_SERVER_ANALYTICS_ENABLED="false",
            )
            log = cache_root() / f"prefect-{version}-migrate.log"
            log.unlink(missing_ok=True)
            prefect = str(venv / "bin" / "prefect")
            run_logged([prefect, "server", "database", "upgrade", "-y"], log, timeout=600, env=env)
            shutil.copyfile(db, template.with_suffix(".tmp"))
            os.replace(template.with_suffix(".tmp"), template)
    return template


def main() -> int:
    if os.environ.get("ACCORD_TEST_PREFECT") == "skip":
        print("ACCORD_TEST_PREFECT=skip: no Prefect venv built")
        return 0
    started = time.monotonic()
    venv = ensure_prefect_venv()
    template = ensure_db_template(venv)
    print(f"Prefect {PREFECT_VERSION}: {venv} and {template} ready after {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
