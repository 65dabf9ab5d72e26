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
    "experiment": ("lab.experiments", "experiment"),
    "log": ("lab.store", "log"),
    "context": ("lab.whole_context", "context"),
    "grade": ("lab.grades", "grade"),
    "rate": ("lab.grades", "rate"),
    "rank": ("lab.grades", "rank"),
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
_NAMESPACES = ("config", "graders", "judges", "grades", "stats", "tables", "plots", "techniques", "batch", "notebooks",
               "report", "grid", "session", "widgets", "prompts", "inputs", "store", "experiments", "runner", "providers",
               "pricing", "errors", "whole_context", "calibration", "findings", "text", "holdout", "selection")

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
    raise AttributeError(f"module 'lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *_NAMESPACES})
