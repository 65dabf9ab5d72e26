"""The package's shape: layers that point one way (docs/architecture.md), checked on every test run."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import lab
import lab.errors

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """Run import-linter on the `lab` package found in ``tree``, with the contracts in its pyproject.toml."""
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(exe), "--no-cache", "--no-logo"], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=120)


def test_imports_point_down_the_layers():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_upward_function_level_import_breaks_the_layers_contract(tmp_path):
    shutil.copytree(ROOT / "lab", tmp_path / "lab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "lab" / "pricing.py", "a") as f:  # base layer reaching up to the runner
        f.write("\n\ndef _sneaky():\n    from .runner import Runner\n\n    return Runner\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "lab.pricing is not allowed to import lab.runner" in result.stdout


def test_a_new_module_without_a_layer_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "lab", tmp_path / "lab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "lab" / "helpers.py").write_text('"""Somewhere to put things."""\n')
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "lab.helpers" in result.stdout


def test_every_module_of_lab_has_a_layer_in_the_contract():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["id"] == "layers")["layers"]
    named = {name.strip("() ") for row in layers for name in row.replace("|", ":").split(":")}
    children = {p.stem for p in (ROOT / "lab").glob("*.py") if p.stem != "__init__"}
    children |= {p.parent.name for p in (ROOT / "lab").glob("*/__init__.py")}
    assert children <= named, f"modules with no layer: {sorted(children - named)}"


def test_no_module_of_lab_imports_the_package_root():
    """The root imports everything (it is the top surface), so a module importing it imports upward."""
    offenders = []
    for path in sorted((ROOT / "lab").rglob("*.py")):
        if path.name == "__init__.py" and path.parent == ROOT / "lab":
            continue
        depth = len(path.relative_to(ROOT / "lab").parts)  # 1 for lab/x.py, 2 for lab/pkg/x.py
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                to_root = (node.level == depth and node.module is None) or (node.level == 0 and node.module == "lab")
                submodules = all((ROOT / "lab" / a.name).with_suffix(".py").exists() or (ROOT / "lab" / a.name).is_dir()
                                 for a in node.names)
                if to_root and not submodules:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            elif isinstance(node, ast.Import) and any(a.name == "lab" for a in node.names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"import from the package root: {offenders}"


# ---- errors: one module holds them all ------------------------------------------------------


def test_every_exception_class_lab_defines_lives_in_lab_errors():
    defined = []
    for path in sorted((ROOT / "lab").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Exceeded", "Cancelled", "Exception"))
                for b in node.bases
            ):
                defined.append((path.relative_to(ROOT).as_posix(), node.name))
    private = {("lab/_yaml.py", "YamlSyntaxError")}  # internal: always turned into PromptFileError / InputSetError
    outside = [d for d in defined if d[0] != "lab/errors.py" and d not in private]
    assert not outside, f"exception classes outside lab/errors.py: {outside}"
    assert {name for _, name in defined if _ == "lab/errors.py"} == set(lab.errors.__all__)
    assert all(issubclass(getattr(lab.errors, n), lab.errors.LabError) for n in lab.errors.__all__)


@pytest.mark.parametrize("namespace, name", [("lab.techniques", "ConversationError"), ("lab.widgets", "CallCancelled")])
def test_errors_are_spelled_lab_errors_not_re_exported_by_namespaces(namespace, name):
    assert not hasattr(importlib.import_module(namespace), name) and hasattr(lab.errors, name)


def test_set_price_refuses_a_negative_price_with_a_lab_error():
    with pytest.raises(lab.errors.ParameterError, match=r"set_price\('openai:gpt-x'.*cannot be negative"):
        lab.pricing.set_price("openai:gpt-x", -1, 2)
    with pytest.raises(ValueError):  # still a ValueError for code that caught that before
        lab.pricing.set_price("openai:gpt-x", 1, -2)


def test_version_comes_from_the_package_metadata():
    assert lab.__version__ == importlib.metadata.version("promptlab")
    from lab.store import _lab_version  # what rows are stamped with

    assert _lab_version() == lab.__version__
