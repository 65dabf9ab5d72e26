"""Shared fixtures. Fast tests use the ``scripted:`` provider; ``slow`` tests use the real local
model (SmolLM2-135M-Instruct) and real loopback servers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import lab
from tests import scripted

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Every test gets its own default log and never touches results/ or real keys."""
    monkeypatch.setenv("PROMPTLAB_LOG", str(tmp_path / "log.db"))
    monkeypatch.setenv("PROMPTLAB_PROGRESS", "off")
    monkeypatch.setenv("PROMPTLAB_RECOVERY_DIR", str(tmp_path))  # a server log's recovery file
    for key in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    scripted.CALLS.clear()


@pytest.fixture
def run_log(request, tmp_path) -> lab.store.RunLog:
    """A fresh log: SQLite, or in a module parametrized over ``backend`` each backend's fresh log."""
    if "backend" in request.fixturenames:
        return lab.log(request.getfixturevalue("backend"))
    return lab.log(tmp_path / "runs.db")


def _unavailable(why: str) -> None:
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"the PostgreSQL run-log tests cannot run in CI: {why}", pytrace=False)
    pytest.skip(f"PostgreSQL run log not tested here: {why}")


@pytest.fixture(scope="session")
def postgres_server():
    """Base URL of the session's throwaway PostgreSQL server (tests/postgres.py), stopped at the end.
    Skips the tests that need it when it cannot start, naming why; under CI=true they fail instead."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install -e '.[dev]')")
    from tests.postgres import NoServer
    from tests.postgres import postgres_server as server

    ctx = server()
    try:
        url = ctx.__enter__()
    except NoServer as exc:
        _unavailable(str(exc))
    try:
        yield url
    finally:
        ctx.__exit__(None, None, None)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path, monkeypatch) -> str:
    """A fresh run log of each kind, named as a user names it (a path, a ``postgresql://`` URL) and
    made the default (``PROMPTLAB_LOG``). A module opts in with
    ``pytestmark = pytest.mark.usefixtures("backend")``; a test marked ``sqlite_only`` (it reads the
    file itself) runs once."""
    if request.param == "sqlite":
        target = str(tmp_path / "log.db")
    else:
        from tests.postgres import drop_database, fresh_database

        target = fresh_database(request.getfixturevalue("postgres_server"))
        request.addfinalizer(lambda: drop_database(target))
    monkeypatch.setenv("PROMPTLAB_LOG", target)
    return target


def pytest_collection_modifyitems(config, items):
    """A ``sqlite_only`` test in a module parametrized over backends runs on SQLite only."""
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_server = callspec is not None and callspec.params.get("backend") == "postgresql"
        (drop if on_server and item.get_closest_marker("sqlite_only") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def write(tmp_path):
    """write("name.yaml", text) -> path of a file in the test's folder."""

    def _write(name: str, text: str | bytes) -> Path:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text, encoding="utf-8")
        return p

    return _write


@pytest.fixture
def model_calls() -> list:
    """Every call the scripted provider received in this test."""
    return scripted.CALLS


@pytest.fixture(scope="session")
def llama_server_url():
    """Base URL of a real ``python -m llama_cpp.server`` serving the bundled SmolLM2 (session-wide)."""
    from tests.servers import llama_server

    with llama_server() as url:
        yield url
