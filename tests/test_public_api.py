"""The public API: a small top level, namespaces for the rest, one spelling each, old spellings warned."""

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


@pytest.mark.parametrize("old, new", [
    ("match", "lab.graders.match"), ("rates", "lab.stats.rates"), ("escaped", "lab.tables.escaped"),
    ("escape_hatch", "lab.graders.escape_hatch"), ("Spread", "lab.techniques.Retries"),
    ("paired_difference", "lab.stats.paired_difference"), ("set_price", "lab.pricing.set_price"),
    ("run_notebook", "lab.notebooks.run_notebook"), ("judge_decoys", "lab.judges.judge_decoys"),
])
def test_an_old_spelling_still_works_and_warns_with_the_new_one(old, new):
    with pytest.warns(DeprecationWarning, match=re.escape(new)):
        value = getattr(lab, old)
    module, _, attr = new.split(" ")[0].rpartition(".")
    assert value is getattr(sys.modules[module], attr)


def test_conversation_retry_is_now_reroll_and_the_old_name_warns(run_log):
    conv = lab.conversation(model="scripted:echo", log=run_log, seed=1)
    conv.ask("hello")
    with pytest.warns(DeprecationWarning, match=r"Conversation\.reroll\(\)"):
        again = conv.retry()
    assert again.attempt == 1 and conv.history[-1].id == again.id


def test_names_that_used_to_collide_now_say_what_they_hold():
    assert lab.rate.__module__ == "lab.grading" and lab.stats.rates.__module__ == "lab.stats"
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
    """Every `lab.x` (and `lab.x.y`) they spell resolves without a deprecation warning."""
    old = []
    for spelled in sorted(_spellings((ROOT / path).read_text())):
        head, _, tail = spelled.partition(".")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                value = getattr(lab, head)
                if tail and not (ROOT / "lab" / head / f"{tail}.py").exists() and not (ROOT / "lab" / f"{head}.py").suffix == "":
                    getattr(value, tail)
            except AttributeError:
                if (ROOT / "lab" / f"{head}.py").exists() or (ROOT / "lab" / head).is_dir() or head in ("py",):
                    continue  # a module path (lab.runner, lab/x.py) named in prose
                old.append(f"lab.{spelled} (no such name)")
                continue
        if any(issubclass(w.category, DeprecationWarning) for w in caught):
            old.append(f"lab.{spelled}")
    assert not old, f"{path} spells {old}"
