"""Shared fixtures. Fast tests use the ``scripted:`` provider; ``slow`` tests use the real local
model (SmolLM2-135M-Instruct) and real loopback servers."""

from __future__ import annotations

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
    for key in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    scripted.CALLS.clear()


@pytest.fixture
def run_log(tmp_path) -> lab.store.RunLog:
    return lab.log(tmp_path / "runs.db")


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
