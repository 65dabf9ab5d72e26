"""The public API: a small top level, namespaces for the rest, one spelling each."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import lab
import lab.errors

ROOT = Path(__file__).resolve().parents[1]


def test_the_top_level_is_the_everyday_path_plus_the_errors():
    errors = set(lab.errors.__all__)
    everyday = set(lab.__all__) - errors - {"__version__"}
    assert {"experiment", "log", "grade", "judge", "rate", "retry", "conversation", "self_critique",
            "compare_framings", "workbench"} <= everyday
    assert len(everyday) <= 24, sorted(everyday)
    assert errors <= set(lab.__all__)  # every exception, exported
    for name in lab.__all__:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert getattr(lab, name) is not None


def test_dir_lists_the_public_names_and_the_namespaces():
    listed = dir(lab)
    assert set(lab.__all__) <= set(listed)
    assert {"graders", "judges", "stats", "tables", "plots", "techniques", "batch", "notebooks", "session"} <= set(listed)
    assert "match" not in listed and "rates" not in listed  # they live in lab.graders / lab.stats


def python(code: str) -> str:
    """What ``code`` prints in a fresh interpreter that imports this tree's `lab`."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_namespaces_load_on_first_use_after_a_bare_import():
    assert python("import lab, sys; assert 'lab.stats' not in sys.modules; lab.stats.rates; lab.graders.match; "
                  "lab.tables.escaped; lab.notebooks.run_notebook; print('ok')") == "ok"


def test_the_session_imports_no_widget_or_plotting_library():
    assert python("import sys, lab.session; s = lab.session.Session; "
                  "print(sorted(m for m in ('ipywidgets', 'plotly', 'papermill') if m in sys.modules))") == "[]"


@pytest.mark.parametrize("old", ["match", "rates", "escaped", "Spread", "set_price", "run_notebook", "Experiment"])
def test_old_spellings_are_gone_not_aliased(old):
    """0.2.0 removed the 0.1 aliases (CHANGELOG.md): each name has one spelling."""
    with pytest.raises(AttributeError):
        getattr(lab, old)
    assert not hasattr(lab.techniques, "Spread") and not hasattr(lab.techniques.Conversation, "retry")
    assert not hasattr(lab.session.Session, "retry") and not hasattr(lab.stats, "repeats_needed")


def test_names_that_used_to_collide_now_say_what_they_hold():
    assert lab.rate.__module__ == "lab.grades" and lab.stats.rates.__module__ == "lab.stats"
    assert lab.escape_report.__module__ == "lab.techniques.escape"
    assert lab.graders.escape_hatch.__module__ == "lab.graders" and lab.tables.escaped.__module__ == "lab.tables"
    assert not hasattr(lab.widgets, "escaped")  # an HTML helper, not a second `escaped`
    assert lab.retry.__module__ == "lab.techniques.retry" and hasattr(lab.techniques.Conversation, "reroll")


def _spellings(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w.])lab\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?)", text))


@pytest.mark.parametrize("path", ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")
                                                    if p.name != "architecture.md"),
                                  *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "notebooks").glob("*.py"))])
def test_readme_docs_and_notebooks_use_the_current_spellings(path):
    """Every `lab.x` (and `lab.x.y`) they spell resolves: a name, a namespace or a module."""
    import importlib

    old = []
    for spelled in sorted(_spellings((ROOT / path).read_text())):
        head, _, tail = spelled.partition(".")
        if head == "py" or (not tail and (ROOT / "lab" / f"{head}.py").exists()):
            continue  # `python -m lab`, a module named in prose
        try:
            value = getattr(lab, head) if hasattr(lab, head) else importlib.import_module(f"lab.{head}")
            if tail and not ((ROOT / "lab" / head / f"{tail}.py").exists() or tail == "py"):
                getattr(value, tail)
        except (AttributeError, ModuleNotFoundError):
            old.append(f"lab.{spelled}")
    assert not old, f"{path} spells names that do not exist: {old}"


def test_the_summary_table_is_the_run_logs_only():
    """One computation (SQL, in the store): no pandas copy to keep equal to it."""
    assert not hasattr(lab.tables, "summary") and callable(lab.store.RunLog.summary)
