"""ipywidgets views: the workbench (``lab.workbench()``) and the comparison view over the log.

Widgets hold no logic of their own: the workbench drives :class:`lab.widgets.session.Session`,
the comparison view draws :mod:`lab.plots` figures from log DataFrames.
"""

from .compare import CompareView, compare_view, side_by_side
from .session import CallCancelled, Session, critique_experiment
from .workbench import Workbench, escaped, workbench

__all__ = ["workbench", "Workbench", "compare_view", "CompareView", "side_by_side", "Session", "CallCancelled", "critique_experiment",
           "escaped"]
