"""promptlab: a notebook-first lab for prompt experiments.

    import lab
    exp = lab.experiment("prompts/sentiment.yaml", inputs="prompts/sentiment_inputs.yaml",
                         model="local:smollm2", repeats=3)
    runs = exp.run()          # every finished call is already in the log
    runs.summary()            # per variant: n, answered, escaped, errors, latency
    lab.log().runs(experiment=exp.id)
"""

from .version import __version__

from .context import Context, context  # noqa: E402
from .errors import (  # noqa: E402
    BudgetExceeded,
    InputSetError,
    LabError,
    ModelSpecError,
    ParameterError,
    PromptFileError,
    ProviderError,
    StoreError,
)
from .inputs import InputRow, InputSet, load_inputs  # noqa: E402
from .pricing import set_price  # noqa: E402
from .prompts import PromptFile, Variant, load_prompt  # noqa: E402
from .providers import get_provider, register_provider  # noqa: E402
from .runner import Experiment, Runs, experiment  # noqa: E402
from .store import RunLog, log  # noqa: E402
from .tables import summary  # noqa: E402
from . import batch  # noqa: E402  (lab.batch.submit / poll / cancel)
from .grading import (  # noqa: E402
    Grade,
    Grader,
    GraderError,
    custom,
    escape_hatch,
    grade,
    json_schema,
    judge,
    judge_agreement,
    judge_decoys,
    match,
    rank,
    rate,
    regex,
)
from .stats import mean_ci, means, paired_difference, proportion_ci, rates, repeats_needed  # noqa: E402
from .tables import critique_rounds, disagreements, escaped, side_by_side, with_grades  # noqa: E402
from .techniques import (  # noqa: E402
    Comparison,
    ContextEffect,
    Conversation,
    Critique,
    ProposedEdgeCases,
    Spread,
    compare_framings,
    context_effect,
    conversation,
    escape_report,
    propose_edge_cases,
    retry,
    self_critique,
    spread,
)

__all__ = [
    "__version__",
    "experiment", "Experiment", "Runs",
    "log", "RunLog",
    "load_prompt", "PromptFile", "Variant",
    "load_inputs", "InputSet", "InputRow",
    "get_provider", "register_provider", "set_price",
    "summary", "context", "Context",
    "LabError", "PromptFileError", "InputSetError", "ModelSpecError", "ParameterError",
    "ProviderError", "BudgetExceeded", "StoreError",
    "retry", "spread", "Spread", "conversation", "Conversation", "context_effect", "ContextEffect",
    "escape_report", "self_critique", "Critique", "compare_framings", "Comparison",
    "propose_edge_cases", "ProposedEdgeCases",
    "grade", "Grade", "Grader", "GraderError", "match", "regex", "json_schema", "custom", "escape_hatch",
    "judge", "judge_agreement", "judge_decoys", "rate", "rank",
    "rates", "means", "proportion_ci", "mean_ci", "paired_difference", "repeats_needed",
    "with_grades", "side_by_side", "escaped", "disagreements", "critique_rounds",
]


# The notebook side (widgets, figures, result notebooks) is imported on first use, so that
# `import lab` in a script does not pull in ipywidgets, plotly or papermill.
_LAZY = {
    "workbench": ("lab.widgets", "workbench"), "compare_view": ("lab.widgets", "compare_view"),
    "plots": ("lab.plots", None), "widgets": ("lab.widgets", None),
    "run_notebook": ("lab.report", "run_notebook"), "run_grid": ("lab.report", "run_grid"),
    "export_html": ("lab.report", "export_html"), "project_root": ("lab.report", "project_root"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        return mod if attr is None else getattr(mod, attr)
    raise AttributeError(f"module 'lab' has no attribute {name!r}")
