"""One frozen run configuration: checked once, shared by experiments and techniques."""

from __future__ import annotations

import pydantic
import pytest

import lab
from lab.config import RunConfig


def test_a_run_config_is_checked_once_and_frozen():
    cfg = RunConfig.of(model="scripted:echo", repeats=3.0, seed=7, params={"seed": 7, "temperature": 0})
    assert cfg.models == ("scripted:echo",) and cfg.repeats == 3 and cfg.seed == 7 and cfg.params == {"temperature": 0}
    with pytest.raises(pydantic.ValidationError):
        cfg.repeats = 4
    assert cfg.with_(repeats=4).repeats == 4 and cfg.repeats == 3


@pytest.mark.parametrize("options, message", [
    ({"repeats": 0}, "repeats must be >= 1, got 0"),
    ({"seed": -1}, "seed must be >= 0"),
    ({"concurrency": 1.5}, "concurrency must be an integer >= 1"),
    ({"budget_usd": -2}, "budget_usd must be a non-negative number"),
    ({"model": []}, "model: give at least one model string"),
    ({"confidence": "yes"}, "confidence must be True or False"),
    ({"repeat": 3}, "unknown run option 'repeat'"),
    ({"seed": 1, "params": {"seed": 2}}, "two seeds given"),
])
def test_each_option_says_what_is_wrong_as_a_parameter_error(options, message):
    with pytest.raises(lab.ParameterError, match=message):
        RunConfig.of(**options)


def test_experiments_and_techniques_take_the_same_config(write, run_log):
    prompt = write("p.yaml", "task: t\nvariants:\n  a:\n    user: '{{ text }}'\n  b:\n    user: 'B {{ text }}'\n")
    cfg = RunConfig.of(model="scripted:echo", repeats=2, seed=3)
    exp = lab.experiment(prompt, [{"id": "x", "text": "hi"}], config=cfg, log=run_log)
    assert exp.config == cfg and exp.repeats == 2 and exp.seed == 3 and len(exp.plan()) == 4
    assert lab.experiment(prompt, [{"id": "x", "text": "hi"}], config=cfg, repeats=1, log=run_log).repeats == 1
    comparison = lab.compare_framings(prompt, [{"id": "x", "text": "hi"}], config=cfg, log=run_log)
    assert len(comparison.runs) == 4
