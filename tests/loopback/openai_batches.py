"""OpenAI Files and Batch on the loopback OpenAI server.

POST /v1/files (multipart upload, purpose=batch), GET /v1/files/{id}, GET /v1/files/{id}/content,
POST /v1/batches, GET /v1/batches/{id}, POST /v1/batches/{id}/cancel. status goes validating ->
in_progress -> finalizing -> completed, or ends expired, cancelling -> cancelled, or failed (an
input file that does not validate). Successful answers go to the output file; failed, expired and
cancelled requests to the error file. Set `srv.batches.plan = BatchPlan(...)` for timing and
failures (see tests.loopback._batches).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tests.loopback._batches import BatchEndpoints, FakeBatch
from tests.loopback._http import Reply, dumps

if TYPE_CHECKING:
    from tests.loopback.openai_server import OpenAIServer

_BATCH = re.compile(r"^/v1/batches(?:/(?P<id>[^/]+)(?:/(?P<action>cancel))?)?$")
_FILE = re.compile(r"^/v1/files(?:/(?P<id>[^/]+)(?:/(?P<action>content))?)?$")
_ENDPOINT = "/v1/chat/completions"
_ABSENT = {"batch_expired": "This request could not be executed before the completion window expired.",
           "batch_cancelled": "This request was not executed because the batch was cancelled."}


class OpenAIBatches(BatchEndpoints):
    """The Files and Batch endpoints of one OpenAIServer."""

    def __init__(self, server: OpenAIServer) -> None:
        super().__init__(server, "batch_")
        self.files: dict[str, dict[str, Any]] = {}  # id -> FileObject fields plus "data"

    def route(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> Reply | None:
        fm, bm = _FILE.match(path), _BATCH.match(path)
        if fm is None and bm is None:
            return None
        if not headers.get("authorization"):
            return self.server._error(401, "You didn't provide an API key in an Authorization header.")
        if fm is not None:
            return self._files(method, fm.group("id"), fm.group("action"), headers, raw)
        batch_id, action = bm.group("id"), bm.group("action")
        if batch_id is None:
            return self._create(raw) if method == "POST" else self.server._error(405, f"{method} not allowed")
        batch = self.book.batches.get(batch_id)
        if batch is None:
            return self.server._error(404, f"No batch found with id '{batch_id}'.")
        if action == "cancel":
            if method != "POST":
                return self.server._error(405, f"{method} not allowed")
            with self.book.lock:
                if batch.canceled is None and self._status(batch) in ("validating", "in_progress"):
                    batch.canceled = batch.elapsed()
        elif method != "GET":
            return self.server._error(405, f"{method} not allowed")
        return Reply(200, dumps(self._object(batch)))

    # -- files ----------------------------------------------------------------------

    def _file_object(self, f: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in f.items() if k != "data"}

    def add_file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        fid = self.book.next_id("file-")
        f = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(__import__("time").time()),
             "filename": filename, "purpose": purpose, "status": "processed", "data": data}
        with self.book.lock:
            self.files[fid] = f
        return f

    def _files(self, method: str, fid: str | None, action: str | None, headers: Mapping[str, str],
               raw: bytes) -> Reply:
        if fid is None:
            if method != "POST":
                return self.server._error(405, f"{method} not allowed")
            parts = self._multipart(headers.get("content-type", ""), raw)
            if "file" not in parts or "purpose" not in parts:
                return self.server._error(400, "a multipart upload needs 'file' and 'purpose' fields")
            data, filename = parts["file"]
            purpose = parts["purpose"][0].decode()
            if purpose == "batch" and not filename.endswith(".jsonl"):
                return self.server._error(400, "batch input files must be .jsonl")
            return Reply(200, dumps(self._file_object(self.add_file(data, filename, purpose))))
        f = self.files.get(fid)
        if f is None:
            return self.server._error(404, f"No such File object: {fid}")
        if method != "GET":
            return self.server._error(405, f"{method} not allowed")
        if action == "content":
            return Reply(200, f["data"], "application/octet-stream")
        return Reply(200, dumps(self._file_object(f)))

    @staticmethod
    def _multipart(content_type: str, raw: bytes) -> dict[str, tuple[bytes, str]]:
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
        out = {}
        for part in msg.iter_parts() if msg.is_multipart() else ():
            name = part.get_param("name", header="content-disposition")
            if name:
                out[name] = (part.get_payload(decode=True) or b"", part.get_filename() or "")
        return out

    # -- batches --------------------------------------------------------------------

    def _create(self, raw: bytes) -> Reply:
        try:
            body = json.loads(raw)
        except ValueError:
            return self.server._error(400, "request body is not valid JSON")
        if not isinstance(body, dict):
            return self.server._error(400, "request body must be a JSON object")
        f = self.files.get(body.get("input_file_id", ""))
        if f is None:
            return self.server._error(400, f"input_file_id {body.get('input_file_id')!r}: no such file")
        if body.get("endpoint") != _ENDPOINT:
            return self.server._error(400, f"endpoint: this server batches {_ENDPOINT} only")
        if body.get("completion_window") != "24h":
            return self.server._error(400, "completion_window: must be '24h'")
        requests, errors = self._parse_input(f["data"])
        batch = FakeBatch(self.book.next_id(), requests, self.book.plan)
        batch.meta.update(input_file_id=f["id"], metadata=body.get("metadata"), errors=errors)
        with self.book.lock:
            self.book.batches[batch.id] = batch
        return Reply(200, dumps(self._object(batch, fresh=True)))

    @staticmethod
    def _parse_input(data: bytes) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
        """The input file's requests, and validation errors (any error fails the whole batch)."""
        requests: list[tuple[str, dict[str, Any]]] = []
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()
        models: set[str] = set()
        for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError:
                errors.append({"code": "invalid_json_line", "message": "This line is not parseable as valid JSON.",
                               "param": None, "line": n})
                continue
            cid = item.get("custom_id")
            if not isinstance(cid, str) or not cid or cid in seen:
                errors.append({"code": "duplicate_custom_id" if cid in seen else "missing_required_parameter",
                               "message": "custom_id must be present and unique", "param": "custom_id", "line": n})
                continue
            if item.get("method") != "POST" or item.get("url") != _ENDPOINT:
                errors.append({"code": "invalid_url", "message": f"url must be {_ENDPOINT} with method POST",
                               "param": "url", "line": n})
                continue
            seen.add(cid)
            req = item.get("body") if isinstance(item.get("body"), dict) else {}
            models.add(str(req.get("model")))
            requests.append((cid, req))
        if len(models) > 1:
            errors.append({"code": "mismatched_model", "message": "all requests in a batch must use one model",
                           "param": "body.model", "line": None})
        if not requests and not errors:
            errors.append({"code": "empty_file", "message": "The input file is empty.", "param": None,
                           "line": None})
        return requests, errors

    def _status(self, batch: FakeBatch) -> str:
        t, plan = batch.elapsed(), batch.plan
        if t < plan.validate_seconds:
            return "validating"
        if batch.meta["errors"]:
            return "failed"
        end, why = batch.cutoff()
        end += plan.validate_seconds
        if why == "canceled":
            return "cancelled" if t >= end + plan.cancel_seconds else "cancelling"
        if t < end:
            return "in_progress"
        if why == "expired":
            return "expired"
        return "completed" if t >= end + plan.finalize_seconds else "finalizing"

    def _object(self, batch: FakeBatch, fresh: bool = False) -> dict[str, Any]:
        status = "validating" if fresh else self._status(batch)  # a new batch validates first, however quick
        created = int(batch.created_unix)
        n = len(batch.requests)
        done = [i for i in range(n) if status not in ("validating", "failed")
                and batch.ran(i, batch.elapsed() - batch.plan.validate_seconds)]
        failed = sum(1 for i in done if batch.plan.outcome(i, *batch.requests[i]) == "error")
        obj: dict[str, Any] = {
            "id": batch.id, "object": "batch", "endpoint": _ENDPOINT, "completion_window": "24h",
            "input_file_id": batch.meta["input_file_id"], "status": status, "created_at": created,
            "expires_at": created + 86400, "metadata": batch.meta["metadata"],
            "request_counts": {"total": n, "completed": len(done) - failed, "failed": failed},
            "output_file_id": None, "error_file_id": None, "errors": None,
        }
        if status == "failed":
            obj["errors"] = {"object": "list", "data": batch.meta["errors"]}
            obj["failed_at"] = created
            obj["request_counts"] = {"total": 0, "completed": 0, "failed": 0}
        if status in ("completed", "expired", "cancelled"):
            obj.update(self._files_for(batch))
            obj[{"completed": "completed_at", "expired": "expired_at", "cancelled": "cancelled_at"}[status]] = created
        if status in ("cancelling", "cancelled"):
            obj["cancelling_at"] = created
        return obj

    def _files_for(self, batch: FakeBatch) -> dict[str, Any]:
        with self.book.lock:
            if batch.results is None:
                batch.results = self._run_all(batch)
            return batch.results

    def _run_all(self, batch: FakeBatch) -> dict[str, Any]:
        out, err = [], []
        headers = {"authorization": "Bearer batch"}
        for i in batch.result_order():
            cid, req = batch.requests[i]
            line: dict[str, Any] = {"id": f"batch_req_{i:024x}", "custom_id": cid, "response": None, "error": None}
            fate = batch.fate(i)
            if fate in ("expired", "canceled"):
                code = "batch_expired" if fate == "expired" else "batch_cancelled"
                line["error"] = {"code": code, "message": _ABSENT[code]}
                err.append(line)
                continue
            if fate == "error":
                reply = self.server._error(batch.plan.error_status, batch.plan.error_message)
            else:
                reply = self.server._validate(headers, req) or self.server._respond(req, i + 1)
            line["response"] = {"status_code": reply.status, "request_id": f"req_{i:024x}",
                                "body": json.loads(reply.body or b"{}")}
            (out if reply.status == 200 else err).append(line)
        files: dict[str, Any] = {"output_file_id": None, "error_file_id": None}
        for key, lines, name in (("output_file_id", out, "output"), ("error_file_id", err, "error")):
            if lines:
                data = ("\n".join(json.dumps(x) for x in lines) + "\n").encode()
                files[key] = self.add_file(data, f"batch_{batch.id}_{name}.jsonl", "batch_output")["id"]
        return files
