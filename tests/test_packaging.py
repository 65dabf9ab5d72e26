"""The two ways in (pip with pyproject.toml, conda with environment.yml) install the same things."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["dev"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    norm = lambda s: re.sub(r"\s", "", s)  # noqa: E731
    assert "-e ." in pip  # the package itself
    assert sorted(map(norm, deps)) == sorted(norm(d) for d in pip if d != "-e .")


def test_committed_notebooks_have_no_outputs():
    import nbformat

    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} has outputs"
        assert nb.metadata["kernelspec"]["name"] == "python3"
