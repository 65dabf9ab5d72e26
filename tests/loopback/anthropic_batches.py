"""Anthropic Message Batches on the loopback Anthropic server.

POST /v1/messages/batches, GET /v1/messages/batches/{id}, GET .../{id}/results (JSONL, in no
particular order), POST .../{id}/cancel. processing_status goes in_progress -> ended, or
in_progress -> canceling -> ended; each result is succeeded, errored, canceled or expired.
Set `srv.batches.plan = BatchPlan(...)` for timing and failures (see tests.loopback._batches).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tests.loopback._batches import BatchEndpoints, FakeBatch
from tests.loopback._http import Reply, dumps

if TYPE_CHECKING:
    from tests.loopback.anthropic_server import AnthropicServer

_ROUTE = re.compile(r"^/v1/messages/batches(?:/(?P<id>[^/]+)(?:/(?P<action>results|cancel))?)?$")
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# the batch's own request carried the key; each request inside is validated as if it had one too
_CHECKED = {"x-api-key": "checked", "anthropic-version": "2023-06-01"}


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat().replace("+00:00", "Z")


class AnthropicBatches(BatchEndpoints):
    """The Message Batches endpoints of one AnthropicServer."""

    def __init__(self, server: AnthropicServer) -> None:
        super().__init__(server, "msgbatch_")

    def route(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> Reply | None:
        m = _ROUTE.match(path)
        if m is None:
            return None
        if not (headers.get("x-api-key") or headers.get("authorization")):
            return self.server._error(401, "x-api-key header is required")
        batch_id, action = m.group("id"), m.group("action")
        if batch_id is None:
            if method != "POST":
                return self.server._error(405, f"{method} is not allowed on {path}")
            return self._create(headers, raw)
        batch = self.book.batches.get(batch_id)
        if batch is None:
            return self.server._error(404, f"message batch {batch_id} not found")
        want = {"results": "GET", "cancel": "POST", None: "GET"}[action]
        if method != want:
            return self.server._error(405, f"{method} is not allowed on {path}")
        if action == "results":
            return self._results(batch)
        if action == "cancel":
            with self.book.lock:
                if batch.canceled is None and not batch.ended():
                    batch.canceled = batch.elapsed()
        return Reply(200, dumps(self._object(batch)))

    def _create(self, headers: Mapping[str, str], raw: bytes) -> Reply:
        try:
            body = json.loads(raw)
        except ValueError:
            return self.server._error(400, "request body is not valid JSON")
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            return self.server._error(400, "requests: Field required (at least one request)")
        if len(requests) > 100_000:
            return self.server._error(413, "a batch holds at most 100,000 requests")
        seen: set[str] = set()
        for i, r in enumerate(requests):
            cid = r.get("custom_id") if isinstance(r, dict) else None
            if not isinstance(cid, str) or not _CUSTOM_ID.match(cid):
                return self.server._error(400, f"requests.{i}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$")
            if cid in seen:
                return self.server._error(400, f"requests.{i}.custom_id: {cid!r} is not unique in this batch")
            if not isinstance(r.get("params"), dict):
                return self.server._error(400, f"requests.{i}.params: Field required")
            seen.add(cid)
        batch = FakeBatch(self.book.next_id(), [(r["custom_id"], r["params"]) for r in requests], self.book.plan)
        with self.book.lock:
            self.book.batches[batch.id] = batch
        return Reply(200, dumps(self._object(batch, fresh=True)))

    def _object(self, batch: FakeBatch, fresh: bool = False) -> dict[str, Any]:
        ended = batch.ended() and not fresh  # a batch is in progress when created, however quick
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if ended:
            for res in self._final(batch).values():
                counts[res["type"]] += 1
            status = "ended"
        else:
            counts["processing"] = len(batch.requests)  # counts move only once the whole batch ends
            status = "canceling" if batch.canceled is not None else "in_progress"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "created_at": _iso(batch.created_unix),
            "expires_at": _iso(batch.created_unix + 86400),
            "ended_at": _iso(batch.created_unix + batch.end_time()) if ended else None,
            "cancel_initiated_at": _iso(batch.created_unix + batch.canceled) if batch.canceled is not None else None,
            "archived_at": None,
            "results_url": f"{self.server.base_url}/v1/messages/batches/{batch.id}/results" if ended else None,
        }

    def _final(self, batch: FakeBatch) -> dict[str, dict[str, Any]]:
        with self.book.lock:
            if batch.results is None:
                batch.results = {cid: self._run(batch, i) for i, (cid, _) in enumerate(batch.requests)}
            return batch.results

    def _run(self, batch: FakeBatch, i: int) -> dict[str, Any]:
        fate = batch.fate(i)
        if fate in ("canceled", "expired"):
            return {"type": fate}
        params = batch.requests[i][1]
        if fate == "error":
            reply = self.server._error(batch.plan.error_status, batch.plan.error_message)
        else:
            reply = self.server._validate(_CHECKED, params) or self.server._respond(params, i + 1)
        payload = json.loads(reply.body or b"{}")
        if reply.status != 200:
            return {"type": "errored", "error": payload}
        return {"type": "succeeded", "message": payload}

    def _results(self, batch: FakeBatch) -> Reply:
        if not batch.ended():
            return self.server._error(400, f"message batch {batch.id} is still in progress; no results yet")
        results = self._final(batch)
        ids = [batch.requests[i][0] for i in batch.result_order()]
        lines = [json.dumps({"custom_id": cid, "result": results[cid]}) for cid in ids]
        return Reply(200, ("\n".join(lines) + "\n").encode(), "application/binary")
