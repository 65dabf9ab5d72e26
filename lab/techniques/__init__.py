"""Prompting techniques as measured, logged experiments.

- :func:`retry`: N independent samples and the spread of their answers;
- :class:`Conversation` / :func:`conversation`: turns, retries of a turn, reset; :func:`context_effect`
  compares a question asked fresh with the same question after earlier turns;
- :func:`escape_report`: escapes on unanswerable inputs vs over-abstention, coverage vs accuracy;
- :func:`self_critique`: answer, critique against a rubric, revise, graded round by round;
- :func:`compare_framings`: persona vs honest context (and persona + escape hatch), paired;
- :func:`propose_edge_cases`: a model proposes inputs likely to break a prompt, for review;
- :func:`ablate`: leave each named part of a variant's context out (or add it to a base), paired;
- :func:`confidence`: token probabilities as confidence: calibration and selective answering;
- :func:`try_version`: one step of the loop, an edited variant against a baseline on the dev inputs;
- :func:`confirm`: a chosen version and its baseline on the held-out inputs, once per choice.
"""

from .ablation import Ablation, ablate
from .confidence import ConfidenceReport, confidence
from .confirm import Confirmation, confirm, confirmations
from .conversation import ContextEffect, Conversation, context_effect, conversation
from .critique import Critique, self_critique
from .edge_cases import ProposedEdgeCases, propose_edge_cases
from .escape import escape_report
from .framing import Comparison, compare_framings
from .iterate import try_version
from .retry import Retries, answer_counts, retry, spread

__all__ = [
    "retry", "spread", "answer_counts", "Retries",
    "conversation", "Conversation", "context_effect", "ContextEffect",
    "escape_report",
    "self_critique", "Critique",
    "compare_framings", "Comparison",
    "propose_edge_cases", "ProposedEdgeCases",
    "ablate", "Ablation", "confidence", "ConfidenceReport",
    "confirm", "Confirmation", "confirmations", "try_version",
]

