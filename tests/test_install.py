"""The install: a portable llama-cpp-python built past pip's cache, and the smoke test that guards it.

The build logic runs against a fake ``python`` that records what it was asked to do (nothing here
ever builds or installs into a real environment); the smoke test runs the real installed model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tool(name: str):
    """One of the install tools in tools/ (scripts run by path, not a package), imported for its functions."""
    spec = importlib.util.spec_from_file_location(f"tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


llama_build = tool("llama_build")
VERSION = llama_build.llama_version()

FAKE_PYTHON = textwrap.dedent(f"""\
    #!{sys.executable}
    # records every command; answers the environment query from $FAKE_INFO; "builds" an empty wheel
    import json, os, sys
    args = sys.argv[1:]
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps({{"args": args, "cmake_args": os.environ.get("CMAKE_ARGS")}}) + "\\n")
    if args[0] == "-c":
        print(os.environ["FAKE_INFO"])
    elif args[:3] == ["-m", "pip", "wheel"]:
        out = args[args.index("-w") + 1]
        open(os.path.join(out, "llama_cpp_python-{VERSION}-cp311-cp311-linux_x86_64.whl"), "w").close()
""")


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A fake environment (prefix, python) and a private wheelhouse; returns a runner of the script."""
    prefix = tmp_path / "venv"
    prefix.mkdir()
    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    house = tmp_path / "wheels"

    def run(installed: str | None = "0.3.36", machine: str = "x86_64", *extra: str) -> list[dict]:
        info = {"machine": machine, "platform": "linux-x86_64", "tag": "cp311", "prefix": str(prefix),
                "installed": installed}
        log.write_text("")
        out = subprocess.run([sys.executable, str(ROOT / "tools" / "llama_build.py"), "--python", str(python), *extra],
                             env={**os.environ, "FAKE_LOG": str(log), "FAKE_INFO": json.dumps(info),
                                  "PROMPTLAB_WHEELHOUSE": str(house)},
                             capture_output=True, text=True, check=True)
        run.stdout = out.stdout
        return [json.loads(line) for line in log.read_text().splitlines()]

    run.prefix, run.house = prefix, house
    return run


def _pip(calls: list[dict], verb: str) -> list[dict]:
    return [c for c in calls if c["args"][:3] == ["-m", "pip", verb]]


def test_a_native_llama_in_the_venv_is_replaced_by_a_portable_wheel_built_past_pips_cache(env):
    calls = env(installed=VERSION)  # installed, but no marker: a native build from pip's cache
    (build,) = _pip(calls, "wheel")
    assert {"--no-cache-dir", "--no-deps"} <= set(build["args"])
    assert build["args"][build["args"].index("--no-binary") + 1] == "llama-cpp-python"
    assert f"llama-cpp-python=={VERSION}" in build["args"]
    assert build["cmake_args"] == ("-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON "
                                   "-DGGML_F16C=ON")
    (install,) = _pip(calls, "install")
    assert "--force-reinstall" in install["args"] and "--no-deps" in install["args"]
    wheel = Path(install["args"][-1])
    assert wheel.parent.parent == env.house and wheel.name.startswith(f"llama_cpp_python-{VERSION}-")
    assert json.loads((env.prefix / ".promptlab-llama").read_text())["wheel"] == str(wheel)
    assert "replacing it" in env.stdout


def test_a_venv_with_the_marked_portable_build_is_left_alone(env):
    env(installed=None)
    calls = env(installed=VERSION)
    assert not _pip(calls, "wheel") and not _pip(calls, "install")
    assert "portable build is installed" in env.stdout


def test_the_wheelhouse_serves_a_second_venv_without_rebuilding(env):
    env(installed=None)
    (env.prefix / ".promptlab-llama").unlink()  # another venv on the same machine
    calls = env(installed=None)
    assert not _pip(calls, "wheel") and len(_pip(calls, "install")) == 1


def test_rebuild_builds_the_wheel_again(env):
    env(installed=None)
    calls = env(VERSION, "x86_64", "--rebuild")
    assert len(_pip(calls, "wheel")) == 1 and len(_pip(calls, "install")) == 1


def test_arm64_builds_with_llama_cpps_defaults_into_its_own_wheelhouse(env):
    x86 = env(installed=None)
    arm = env(None, "aarch64")
    (build,) = _pip(arm, "wheel")
    assert build["cmake_args"] == ""
    assert Path(_pip(arm, "install")[0]["args"][-1]).parent != Path(_pip(x86, "install")[0]["args"][-1]).parent


def test_dry_run_says_what_it_would_do_and_does_nothing(env):
    calls = env(None, "x86_64", "--dry-run")
    assert not _pip(calls, "wheel") and not _pip(calls, "install")
    assert "would run: CMAKE_ARGS='-DGGML_NATIVE=OFF" in env.stdout and "--no-cache-dir" in env.stdout
    assert not (env.prefix / ".promptlab-llama").exists()


def test_the_makefile_installs_the_portable_llama_before_the_package_and_stamps_only_after_the_smoke_test():
    recipe = (ROOT / "Makefile").read_text().split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    steps = [line.strip() for line in recipe.splitlines()[1:]]
    order = [next(i for i, s in enumerate(steps) if what in s)
             for what in ("tools/llama_build.py", "-e '.[dev]'", "tools/smoke.py", "touch $@")]
    assert order == sorted(order)


def test_a_crashing_build_gets_one_paragraph_saying_what_happened_and_what_to_do(tmp_path):
    # a "python" whose worker dies the way a native build does on these machines
    crashing = tmp_path / "python"
    crashing.write_text(f"#!{sys.executable}\nimport os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    crashing.chmod(0o755)
    from lab.providers.local import WorkerDied
    crash_advice, smoke = tool("smoke").crash_advice, tool("smoke").smoke

    with pytest.raises(WorkerDied) as info:
        smoke(tmp_path / "model.gguf", python=str(crashing))
    text = crash_advice(info.value)
    assert "signal 11 (SIGSEGV)" in text and "\n" not in text
    assert "-DGGML_NATIVE=OFF" in text and "make install-llama REBUILD=1" in text


@pytest.mark.slow
def test_the_smoke_test_generates_with_the_installed_model_in_a_subprocess():
    out = subprocess.run([sys.executable, "tools/smoke.py"], capture_output=True, text=True, timeout=300,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("smoke test: the local model answered '")
