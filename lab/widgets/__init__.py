"""ipywidgets views: the workbench (``lab.workbench()``) and the comparison view over the log.

Widgets hold no logic of their own: the workbench drives :class:`lab.session.Session`,
the comparison view draws :mod:`lab.plots` figures from log DataFrames.
"""

from .compare import CompareView, FindingsBlock, blind_names, blinded, compare_view, findings_block
from .workbench import Workbench, workbench

__all__ = ["workbench", "Workbench", "compare_view", "CompareView", "findings_block", "FindingsBlock",
           "blinded", "blind_names"]
