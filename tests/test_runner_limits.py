"""The runner's concurrency limiter (first in, first out, resizable, AIMD), replay in bulk, and a cheap repr."""

from __future__ import annotations

import asyncio

import lab
from lab.runner import _Limiter

PROMPT = "task: t\nvariants:\n  a:\n    user: 'Say {{ text }}'\n"


def test_limiter_admits_waiters_in_arrival_order_and_only_as_many_as_fit():
    async def scenario() -> list[int]:
        lim = _Limiter(2)
        order: list[int] = []
        gate = asyncio.Event()

        async def worker(i: int) -> None:
            async with lim:
                order.append(i)
                assert lim.in_flight <= lim.limit
                await gate.wait()

        tasks = [asyncio.create_task(worker(i)) for i in range(6)]
        await asyncio.sleep(0.01)
        assert order == [0, 1] and lim.in_flight == 2
        lim.limit = 4  # growing the limit admits waiters at once
        await asyncio.sleep(0.01)
        assert order == [0, 1, 2, 3]
        gate.set()
        await asyncio.gather(*tasks)
        assert lim.in_flight == 0
        return order

    assert asyncio.run(scenario()) == list(range(6))


def test_limiter_halves_once_per_epoch_on_rate_limits_and_climbs_back_one_slot_at_a_time():
    lim = _Limiter(16)
    lim.rate_limited(0)
    lim.rate_limited(0)  # a second 429 from a call started before the cut says nothing new
    assert lim.limit == 8 and lim.epoch == 1
    lim.rate_limited(1)
    assert lim.limit == 4
    for _ in range(4):
        lim.succeeded(lim.epoch)
    assert lim.limit == 5
    for _ in range(200):
        lim.succeeded(lim.epoch)
    assert lim.limit == 16 == lim.ceiling  # never above what the user asked for
    for _ in range(10):
        lim.rate_limited(lim.epoch)
    assert lim.limit == 1


def test_cancelled_waiter_does_not_leak_a_slot():
    async def scenario() -> int:
        lim = _Limiter(1)
        await lim.acquire()
        waiter = asyncio.create_task(lim.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        lim.release()
        await asyncio.sleep(0)
        assert lim.in_flight == 0
        await lim.acquire()
        return lim.in_flight

    assert asyncio.run(scenario()) == 1


def test_replay_serves_a_whole_batch_from_the_log_without_model_calls(write, run_log, model_calls):
    prompt = write("p.yaml", PROMPT)
    inputs = [{"id": f"r{i}", "text": f"item {i}"} for i in range(50)]
    first = lab.experiment(prompt, inputs, model="scripted:echo", seed=3, log=run_log).run()
    made = len(model_calls)
    again = lab.experiment(prompt, inputs, model="scripted:echo", seed=3, log=run_log, replay=True).run()
    assert len(model_calls) == made == 50
    a = first.df.set_index("input_id")["output"].sort_index()
    b = again.df.set_index("input_id")["output"].sort_index()
    assert a.equals(b) and again.df["replayed_from"].notna().all()
    assert set(again.df["replayed_from"]) == set(first.df["id"])
    finished = run_log.events(again.experiment_id).query("kind == 'finished'")["detail"].iloc[0]
    assert finished["replayed"] == 50 and finished["made"] == 0


def test_runs_repr_counts_outcomes_without_reading_the_log(write, run_log, monkeypatch):
    prompt = write("p.yaml", PROMPT)
    runs = lab.experiment(prompt, [{"id": "x", "text": "hi"}], model="scripted:echo", log=run_log).run()

    def no_reads(*a, **k):
        raise AssertionError("repr must not query the log")

    monkeypatch.setattr(run_log, "runs", no_reads)
    assert repr(runs) == f"Runs({runs.experiment_id!r}, 1 calls: 1 answered)"
