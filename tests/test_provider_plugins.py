"""A third party adds a provider without editing the lab: a package that declares it in the
``promptlab.providers`` entry-point group, installed into the venv, runs an experiment."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import lab
from lab.providers import ProviderEntry, batch_api, get_provider, has_batch_api

ROOT = Path(__file__).resolve().parents[1]

# the example of README.md ("A provider of your own"), as a package
PLUGIN = '''
from lab.providers import Completion, Provider


class EchoProvider(Provider):
    honours_seed = True

    async def complete(self, messages, params):
        return Completion(text="echo: " + messages[-1]["content"], input_tokens=1, output_tokens=1, finish_reason="stop")


def echo(model, rest, options):
    return EchoProvider(model)
'''

ENTRY_POINTS = """[promptlab.providers]
echotest = promptlab_echo_test:echo
"""


def _wheel(folder: Path) -> Path:
    """The package as a wheel, written by hand (a wheel is a zip with a .dist-info folder), so the
    test needs no build backend and no network; pip installs it like any other wheel."""
    info = "promptlab_echo_test-0.1.dist-info"
    files = {"promptlab_echo_test.py": PLUGIN,
             f"{info}/METADATA": "Metadata-Version: 2.1\nName: promptlab-echo-test\nVersion: 0.1\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: promptlab-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
             f"{info}/entry_points.txt": ENTRY_POINTS}
    record = [f"{name},sha256={_digest(text)},{len(text.encode())}" for name, text in files.items()]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    path = folder / "promptlab_echo_test-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


def _digest(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()


RUN = '''
import lab
exp = lab.experiment("{prompt}", [{{"id": "a", "text": "hello"}}, {{"id": "b", "text": "bye"}}],
                     model="echotest:any", log="{log}", repeats=2, seed=1)
df = exp.run().df
print(sorted(set(df.output)), len(df), lab.providers.has_batch_api("echotest:any"))
'''


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def echo_package(tmp_path):
    installed = _pip("install", "--no-deps", "--no-index", str(_wheel(tmp_path)))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    try:
        yield
    finally:
        _pip("uninstall", "-y", "promptlab-echo-test")


def test_a_provider_package_installed_into_the_venv_runs_an_experiment(echo_package, write, tmp_path):
    prompt = write("p.yaml", "task: t\nvariants:\n  plain:\n    user: '{{ text }}'\n")
    code = RUN.format(prompt=prompt, log=tmp_path / "log.db")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['echo: bye', 'echo: hello'] 4 False"


def test_a_provider_declares_its_batch_api_in_the_same_registry(monkeypatch):
    from lab.providers import registry

    made = []
    monkeypatch.setitem(registry._REGISTRY, "batchy", ProviderEntry(
        live=lambda model, rest, options: get_provider("scripted:echo"),
        batch=lambda model, rest, options: made.append((model, rest, options)) or "api"))
    assert has_batch_api("batchy:m") and not has_batch_api("scripted:echo") and not has_batch_api("nonsense")
    assert batch_api("batchy:m", timeout=3) == "api" and made == [("batchy:m", "m", {"timeout": 3})]
    assert has_batch_api("anthropic:claude-haiku-4-5") and not has_batch_api("local:smollm2")
    with pytest.raises(lab.ModelSpecError, match="has no batch API; batch mode works for anthropic:..., batchy:..."):
        batch_api("local:smollm2")


def test_an_unknown_prefix_names_the_entry_point_group():
    with pytest.raises(lab.ModelSpecError, match="promptlab.providers"):
        get_provider("nosuchprovider:x")
