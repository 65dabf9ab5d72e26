"""promptlab: a notebook-first lab for prompt experiments.

    import lab
    exp = lab.experiment("prompts/sentiment.yaml", inputs="prompts/sentiment_inputs.yaml",
                         model="local:smollm2", repeats=3)
    runs = exp.run()          # every finished call is already in the log
    runs.summary()            # per variant: n, answered, escaped, errors, latency
    lab.log().runs(experiment=exp.id)
"""

from .version import __version__

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
__all__ += ["ablate", "Ablation", "confidence", "ConfidenceReport"]


# Every name is imported on first use, so that `import lab` (and `python -m lab --help`) does not
# pull in pandas, the provider SDKs, ipywidgets, plotly or papermill before they are needed.
_LAZY = {
    **{name: ("lab.errors", name) for name in (
        "LabError", "PromptFileError", "InputSetError", "ModelSpecError", "ParameterError", "ProviderError",
        "BudgetExceeded", "StoreError")},
    "Context": ("lab.context", "Context"), "context": ("lab.context", "context"),
    "InputRow": ("lab.inputs", "InputRow"), "InputSet": ("lab.inputs", "InputSet"),
    "load_inputs": ("lab.inputs", "load_inputs"),
    "set_price": ("lab.pricing", "set_price"),
    "PromptFile": ("lab.prompts", "PromptFile"), "Variant": ("lab.prompts", "Variant"),
    "load_prompt": ("lab.prompts", "load_prompt"),
    "get_provider": ("lab.providers", "get_provider"), "register_provider": ("lab.providers", "register_provider"),
    "Experiment": ("lab.runner", "Experiment"), "Runs": ("lab.runner", "Runs"),
    "experiment": ("lab.runner", "experiment"),
    "RunLog": ("lab.store", "RunLog"), "log": ("lab.store", "log"),
    "batch": ("lab.batch", None),
    **{name: ("lab.grading", name) for name in (
        "Grade", "Grader", "GraderError", "custom", "escape_hatch", "grade", "json_schema", "judge",
        "judge_agreement", "judge_decoys", "match", "rank", "rate", "regex")},
    **{name: ("lab.stats", name) for name in (
        "mean_ci", "means", "paired_difference", "proportion_ci", "rates", "repeats_needed")},
    **{name: ("lab.tables", name) for name in (
        "summary", "critique_rounds", "disagreements", "escaped", "side_by_side", "with_grades")},
    **{name: ("lab.techniques", name) for name in (
        "Comparison", "ContextEffect", "Conversation", "Critique", "ProposedEdgeCases", "Spread",
        "compare_framings", "context_effect", "conversation", "escape_report", "propose_edge_cases", "retry",
        "self_critique", "spread", "ablate", "Ablation", "confidence", "ConfidenceReport")},
    "workbench": ("lab.widgets", "workbench"), "compare_view": ("lab.widgets", "compare_view"),
    "plots": ("lab.plots", None), "widgets": ("lab.widgets", None), "findings": ("lab.findings", None),
    "run_notebook": ("lab.report", "run_notebook"), "run_grid": ("lab.report", "run_grid"),
    "export_html": ("lab.report", "export_html"), "project_root": ("lab.report", "project_root"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        value = mod if attr is None else getattr(mod, attr)
        globals()[name] = value  # the next lookup is a plain attribute
        if module == "lab.context":  # importing the submodule bound lab.context to it: the function wins
            globals()["context"] = mod.context
        return value
    raise AttributeError(f"module 'lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
