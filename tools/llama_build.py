"""Install a portable llama-cpp-python into an environment (``make install`` runs this first).

    python tools/llama_build.py --python .venv/bin/python            # what make install does
    python tools/llama_build.py --python "$(which python)"           # a conda env (see README)
    python tools/llama_build.py --python .venv/bin/python --rebuild  # build the wheel again

Run by path with any Python 3.11+: it needs only the standard library (the lab's own dependencies
are not installed yet when it runs).

Why: pip builds llama-cpp-python from source with the compiler's native CPU flags, and on a CPU
that advertises instructions its hypervisor does not enable (Intel AMX on some cloud VMs) the
first model call dies with SIGSEGV. And pip's wheel cache is keyed by the source archive, not by
CMAKE_ARGS, so a machine that once built a native wheel keeps getting it. So the wheel is built
here with portable flags (x86-64: AVX2/FMA/F16C, no native; arm64: llama.cpp's defaults), with
``--no-cache-dir --no-binary``, into a wheelhouse of ours keyed by the version, the flags and the
Python tag (``~/.cache/promptlab/wheels/<key>/``; ``PROMPTLAB_WHEELHOUSE`` moves it), and installed
from there before anything else can pull in a native build. The environment gets a marker
(``<prefix>/.promptlab-llama``); an environment whose llama-cpp-python lacks it (a native build
from pip or conda) has it replaced.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = ".promptlab-llama"
X86_64_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
_INFO = ("import importlib.metadata as m, json, platform, sys, sysconfig\n"
         "try: v = m.version('llama-cpp-python')\nexcept m.PackageNotFoundError: v = None\n"
         "print(json.dumps({'machine': platform.machine(), 'platform': sysconfig.get_platform(), "
         "'tag': 'cp%d%d' % sys.version_info[:2], 'prefix': sys.prefix, 'installed': v}))")


def llama_version(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The llama-cpp-python version pyproject.toml pins."""
    found = re.search(r'"llama-cpp-python(?:\[[^\]]*\])?==([^"]+)"', pyproject.read_text(encoding="utf-8"))
    if not found:
        sys.exit(f"{pyproject}: no pinned llama-cpp-python (llama-cpp-python==X.Y.Z) in its dependencies")
    return found.group(1)


def cmake_args(machine: str) -> str:
    """Portable build flags for a CPU architecture (``platform.machine()``)."""
    if machine.lower() in ("x86_64", "amd64"):
        return X86_64_ARGS
    return ""  # arm64 and others: llama.cpp's defaults


def wheel_key(version: str, args: str, tag: str, plat: str) -> str:
    return hashlib.sha256(json.dumps([version, args, tag, plat]).encode()).hexdigest()[:16]


def wheelhouse_root() -> Path:
    return Path(os.environ.get("PROMPTLAB_WHEELHOUSE") or Path.home() / ".cache" / "promptlab" / "wheels")


def _run(cmd: list[str], env: dict[str, str] | None = None, dry: bool = False) -> None:
    shown = " ".join(shlex.quote(c) for c in cmd)
    if env and env.get("CMAKE_ARGS") is not None:
        shown = f"CMAKE_ARGS={shlex.quote(env['CMAKE_ARGS'])} {shown}"
    print(("would run: " if dry else "+ ") + shown, flush=True)
    if not dry:
        subprocess.run(cmd, check=True, env=env)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=sys.executable, help="the environment's python (default: this one)")
    ap.add_argument("--rebuild", action="store_true", help="build the wheel again even if the wheelhouse has it")
    ap.add_argument("--dry-run", action="store_true", help="say what would be built and installed, do nothing")
    a = ap.parse_args(argv)
    version = llama_version()
    info = json.loads(subprocess.run([a.python, "-c", _INFO], check=True, capture_output=True, text=True).stdout)
    args = cmake_args(info["machine"])
    key = wheel_key(version, args, info["tag"], info["platform"])
    marker = Path(info["prefix"]) / MARKER
    try:
        mark = json.loads(marker.read_text())
    except (OSError, ValueError):
        mark = {}
    if not a.rebuild and mark.get("key") == key and info["installed"] == version:
        print(f"llama-cpp-python {version}: the portable build is installed ({key})")
        return 0
    if info["installed"]:
        print(f"llama-cpp-python {info['installed']} in {info['prefix']} is not the lab's portable build "
              f"{version} ({key}): replacing it")
    house = wheelhouse_root() / key
    wheels = sorted(house.glob(f"llama_cpp_python-{version}-*.whl"))
    if a.rebuild or not wheels:
        print(f"building llama-cpp-python {version} portable ({args or 'defaults'}) into {house}; "
              "about 10 minutes on 2 cores, once per machine")
        env = {**os.environ, "CMAKE_ARGS": args, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
        build = [a.python, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "--no-binary", "llama-cpp-python",
                 "-w", "<tmp>", f"llama-cpp-python=={version}"]
        if a.dry_run:
            _run(build, env=env, dry=True)
        else:
            house.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=house) as tmp:
                build[build.index("<tmp>")] = tmp
                _run(build, env=env)
                for built in Path(tmp).glob("llama_cpp_python-*.whl"):
                    shutil.move(str(built), house / built.name)  # whole or nothing: never a half-built wheel
        wheels = sorted(house.glob(f"llama_cpp_python-{version}-*.whl"))
        if not wheels and not a.dry_run:
            sys.exit(f"pip wheel left no llama_cpp_python-{version}-*.whl in {house}")
    wheel = str(wheels[-1]) if wheels else str(house / f"llama_cpp_python-{version}-(built).whl")
    _run([a.python, "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", wheel], dry=a.dry_run)
    if not a.dry_run:
        marker.write_text(json.dumps({"key": key, "version": version, "cmake_args": args, "wheel": wheel}) + "\n")
        print(f"llama-cpp-python {version} installed from the portable wheel {wheel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
