"""ipywidgets views: the workbench (``lab.workbench()``) and the comparison view over the log.

Widgets hold no logic of their own: the workbench drives :class:`lab.widgets.session.Session`,
the comparison view draws :mod:`lab.plots` figures from log DataFrames.
"""

from .compare import CompareView, FindingsBlock, compare_view, findings_block
from .session import CallCancelled, Session
from .workbench import Workbench, escaped, workbench

__all__ = ["workbench", "Workbench", "compare_view", "CompareView", "Session", "CallCancelled",
           "escaped", "findings_block", "FindingsBlock"]
