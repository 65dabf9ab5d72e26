"""promptlab: a notebook-first lab for prompt experiments.

    import lab
    exp = lab.experiment("prompts/sentiment.yaml", inputs="prompts/sentiment_inputs.yaml",
                         model="local:smollm2", repeats=3)
    runs = exp.run()          # every finished call is already in the log
    runs.summary()            # per variant: n, answered, escaped, errors, latency
    lab.log().runs(experiment=exp.id)

`import lab` gives the everyday path (``__all__``); everything else lives in its namespace:
``lab.graders``, ``lab.judges``, ``lab.stats``, ``lab.tables``, ``lab.plots``, ``lab.techniques``,
``lab.batch``, ``lab.notebooks``, ``lab.session``, ... (see docs/architecture.md). Names are
imported on first use, so `import lab` does not load pandas, the SDKs, ipywidgets or plotly.
"""

from .errors import (
    BatchError,
    BudgetExceeded,
    CallCancelled,
    ConversationError,
    GraderError,
    InputSetError,
    LabError,
    ModelSpecError,
    NotebookError,
    ParameterError,
    PromptFileError,
    ProviderError,
    StoreError,
    WorkerDied,
)
from .errors import __all__ as _ERRORS

# the everyday path: name -> (module, attribute)
_EVERYDAY = {
    "__version__": ("lab.version", "__version__"),  # package metadata: read on first use (it costs ~0.1 s)
    "experiment": ("lab.runner", "experiment"),
    "log": ("lab.store", "log"),
    "context": ("lab.whole_context", "context"),
    "grade": ("lab.grading", "grade"),
    "rate": ("lab.grading", "rate"),
    "rank": ("lab.grading", "rank"),
    "judge": ("lab.judges", "judge"),
    "retry": ("lab.techniques", "retry"),
    "conversation": ("lab.techniques", "conversation"),
    "context_effect": ("lab.techniques", "context_effect"),
    "escape_report": ("lab.techniques", "escape_report"),
    "self_critique": ("lab.techniques", "self_critique"),
    "compare_framings": ("lab.techniques", "compare_framings"),
    "propose_edge_cases": ("lab.techniques", "propose_edge_cases"),
    "ablate": ("lab.techniques", "ablate"),
    "confidence": ("lab.techniques", "confidence"),
    "split_inputs": ("lab.holdout", "split_inputs"),  # held-out inputs and the confirm step (issue 19)
    "confirm": ("lab.techniques", "confirm"),
    "workbench": ("lab.widgets", "workbench"),
    "compare_view": ("lab.widgets", "compare_view"),
}

# the namespaces, imported on first use (`lab.stats.rates(...)` works after a bare `import lab`)
_NAMESPACES = ("graders", "judges", "grading", "stats", "tables", "plots", "techniques", "batch", "notebooks",
               "report", "grid", "session", "widgets", "prompts", "inputs", "store", "runner", "runs", "providers", "pricing",
               "errors", "whole_context", "calibration", "findings", "text", "holdout", "selection")

# old spellings, kept for one version: name -> (module, attribute, the spelling to use now)
_MOVED = {
    **{n: ("lab.runner", n, f"lab.runner.{n}") for n in ("Experiment",)},
    "Runs": ("lab.runs", "Runs", "lab.runs.Runs"),
    "RunLog": ("lab.store", "RunLog", "lab.store.RunLog (lab.log() opens one)"),
    **{n: ("lab.prompts", n, f"lab.prompts.{n}") for n in ("load_prompt", "PromptFile", "Variant")},
    **{n: ("lab.inputs", n, f"lab.inputs.{n}") for n in ("load_inputs", "InputSet", "InputRow")},
    **{n: ("lab.providers", n, f"lab.providers.{n}") for n in ("get_provider", "register_provider")},
    "set_price": ("lab.pricing", "set_price", "lab.pricing.set_price"),
    "Context": ("lab.whole_context", "Context", "lab.whole_context.Context"),
    **{n: ("lab.graders", n, f"lab.graders.{n}") for n in ("Grade", "Grader", "match", "regex", "json_schema",
                                                            "custom", "escape_hatch")},
    **{n: ("lab.judges", n, f"lab.judges.{n}") for n in ("judge_agreement", "judge_decoys")},
    **{n: ("lab.stats", n, f"lab.stats.{n}") for n in ("rates", "means", "proportion_ci", "mean_ci",
                                                        "paired_difference", "repeats_needed")},
    **{n: ("lab.tables", n, f"lab.tables.{n}") for n in ("summary", "with_grades", "side_by_side", "escaped",
                                                          "disagreements", "critique_rounds")},
    **{n: ("lab.techniques", n, f"lab.techniques.{n}") for n in ("Conversation", "ContextEffect", "Critique",
                                                                  "Comparison", "ProposedEdgeCases", "spread",
                                                                  "Ablation", "ConfidenceReport")},
    "Spread": ("lab.techniques", "Retries", "lab.techniques.Retries (what lab.retry returns)"),
    **{n: ("lab.notebooks", n, f"lab.notebooks.{n}") for n in ("run_notebook", "run_grid", "project_root")},
    "export_html": ("lab.report", "export_html", "lab.report.export_html"),
}

__all__ = [*_EVERYDAY, *_ERRORS]


def __getattr__(name: str):
    import importlib

    if name in _EVERYDAY:
        module, attr = _EVERYDAY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # the next lookup is a plain attribute
        return value
    if name in _NAMESPACES:
        return importlib.import_module(f"lab.{name}")
    if name in _MOVED:
        import warnings

        module, attr, new = _MOVED[name]
        warnings.warn(f"lab.{name} is deprecated and goes away in the next version; use {new}",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *_NAMESPACES})
