"""Shared machinery for the loopback API servers.

A `LoopbackServer` is a stdlib threaded HTTP/1.1 keep-alive server on 127.0.0.1 that
runs on a background thread, counts requests, tracks how many are in flight, keeps a
bounded log (path, model, whether an auth header was present; never the key), and
injects faults from a `FaultPlan`. Provider subclasses supply the wire format.
"""

from __future__ import annotations

import argparse
import collections
import http
import http.server
import json
import random
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Self

#: Every fault a `FaultPlan` can name. "ok" means: answer normally.
FAULT_NAMES: frozenset[str] = frozenset(
    {"ok", "429", "529", "500", "503", "timeout", "malformed", "reset"}
)
_STATUS_FAULTS = {"429": 429, "529": 529, "500": 500, "503": 503}

#: A responder gets the parsed request JSON and returns the reply text.
Responder = Callable[[dict[str, Any]], str]

_CONTROL_PREFIX = "/__loopback__/"


@dataclass
class FaultPlan:
    """Deterministic fault injection for a loopback server.

    script: fault names applied, in order, to the first len(script) completion requests.
    rates: {fault_name: probability} drawn after the script runs out, from random.Random(seed).
    max_in_flight: answer 429 whenever more than this many requests are in flight.
    retry_after: value of the retry-after header on 429s (None omits the header).
        Note that both SDKs treat "0" as "no hint" and fall back to their own backoff
        (about 0.4-0.5 s for the first retry); use e.g. "0.01" for fast tests.
    slow_seconds: how long the "timeout" fault stalls before answering normally.

    A plan keeps its position in the script; set a fresh plan (or call reset()) to rerun it.
    """

    script: Sequence[str] = ()
    rates: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    max_in_flight: int | None = None
    retry_after: str | None = "0"
    slow_seconds: float = 5.0
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)
    _index: int = field(default=0, init=False, repr=False, compare=False)
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.script = tuple(self.script)
        self.rates = dict(self.rates)
        unknown = (set(self.script) | set(self.rates)) - FAULT_NAMES
        if unknown:
            raise ValueError(f"unknown fault names {sorted(unknown)}; known: {sorted(FAULT_NAMES)}")
        if any(p < 0 for p in self.rates.values()) or sum(self.rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates must be non-negative and sum to at most 1")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._rng = random.Random(self.seed)

    def reset(self) -> None:
        """Rewind the script and reseed the random draws."""
        with self._lock:
            self._index = 0
            self._rng = random.Random(self.seed)

    def next_fault(self, in_flight: int) -> str:
        """The fault for the next completion request, given the in-flight count including it."""
        with self._lock:
            i = self._index
            self._index += 1
            if i < len(self.script):
                fault = self.script[i]
            elif self.rates:
                draw = self._rng.random()
                fault = "ok"
                for name, p in self.rates.items():
                    if draw < p:
                        fault = name
                        break
                    draw -= p
            else:
                fault = "ok"
        if fault == "ok" and self.max_in_flight is not None and in_flight > self.max_in_flight:
            return "429"
        return fault


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One entry of the request log. The API key itself is never recorded."""

    method: str
    path: str
    model: str | None
    has_auth: bool
    status: int | None  # None when the connection was reset without a response
    fault: str | None  # None when no fault was injected
    retry_count: int | None  # the SDK's x-stainless-retry-count header, when sent
    at: float  # time.monotonic() when the request arrived


class Reply(NamedTuple):
    """A complete HTTP answer; `body is None` means: reset the connection."""

    status: int
    body: bytes | None
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def dumps(obj: object) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(obj, separators=(",", ":")).encode()


def text_of(content: object) -> str:
    """Plain text of a message's content: a string, or a list of text blocks/parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def count_tokens(text: str) -> int:
    """Deterministic stand-in for a tokenizer: whitespace words, at least 1."""
    return max(1, len(text.split()))


def last_user_text(messages: object) -> str:
    """Text of the last message with role "user" ("" when there is none)."""
    if isinstance(messages, list):
        for msg in reversed(messages):
            if isinstance(msg, dict) and msg.get("role") == "user":
                return text_of(msg.get("content"))
    return ""


def echo_responder(request: dict[str, Any]) -> str:
    """Default responder: "echo: " plus the first 200 characters of the last user message."""
    return "echo: " + last_user_text(request.get("messages"))[:200]


def truncate_words(text: str, limit: int) -> tuple[str, bool]:
    """Cut `text` to `limit` whitespace words; returns (text, was_cut)."""
    words = text.split()
    if len(words) <= limit:
        return text, False
    return " ".join(words[:limit]), True


_REASONS = {529: "Overloaded"}


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return _REASONS.get(status, "Unknown")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Each reply goes out in one write, but keep-alive replies must not wait on Nagle.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        self.server.owner._track(self.connection, add=False)
        try:
            super().finish()
        except OSError:
            pass

    def do_GET(self) -> None:
        self.server.owner._handle(self)

    def do_POST(self) -> None:
        self.server.owner._handle(self)

    def do_PUT(self) -> None:
        self.server.owner._handle(self)

    def do_DELETE(self) -> None:
        self.server.owner._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line on stderr per request would dominate the benchmarks

    def read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send_reply(self, reply: Reply, request_id_header: str, request_id: str) -> None:
        body = reply.body or b""
        lines = [
            f"HTTP/1.1 {reply.status} {_reason(reply.status)}",
            f"Content-Type: {reply.content_type}",
            f"Content-Length: {len(body)}",
            f"{request_id_header}: {request_id}",
        ]
        lines.extend(f"{k}: {v}" for k, v in reply.headers)
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def reset_connection(self) -> None:
        """Drop the connection with a TCP RST instead of an answer."""
        self.close_connection = True
        conn = self.connection
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The socket only really closes once its makefile() wrappers are closed too.
        for f in (self.rfile, self.wfile):
            try:
                f.close()
            except OSError:
                pass
        conn.close()


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not block stop()
    request_queue_size = 128  # the default backlog of 5 drops SYNs under a burst of 16 connects
    owner: LoopbackServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        # ConnectionError and TimeoutError are OSErrors; a "reset" fault closes the socket under the
        # handler, whose final flush then raises ValueError (I/O on a closed file)
        if isinstance(exc, (OSError, ValueError)):
            return  # clients that give up or reset are part of the job
        super().handle_error(request, client_address)


class LoopbackServer:
    """Base class: a fake API server on loopback. Use as a context manager.

    Subclasses set `completion_path`, `models_path`, `url_suffix`, `request_id_header`
    and implement `_validate`, `_answer`, `_error` and `_models`.
    """

    completion_path: str = ""
    models_path: str = "/v1/models"
    url_suffix: str = ""
    request_id_header: str = "request-id"
    request_id_prefix: str = "req_"
    default_models: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        latency: float = 0.0,
        responder: Responder | None = None,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log_size: int = 1000,
        models: Sequence[str] | None = None,
    ) -> None:
        """latency: seconds each answer is held (injected 429/5xx answer at once).
        responder: request JSON -> reply text (default: echo of the last user message).
        faults: a FaultPlan, or None for no faults. port 0 picks a free port.
        log_size: how many RequestRecords the bounded log keeps. models: ids for /v1/models.
        """
        self.latency = float(latency)
        self.responder: Responder = responder or echo_responder
        self._faults = faults
        self._host = host
        self._port = port
        self.models = tuple(models) if models else self.default_models
        self._lock = threading.Lock()
        self._log: collections.deque[RequestRecord] = collections.deque(maxlen=log_size)
        self._requests = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._by_status: collections.Counter[int] = collections.Counter()
        self._fault_counts: collections.Counter[str] = collections.Counter()
        self._serial = 0
        self._connections_opened = 0
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve on a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((self._host, self._port), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"{type(self).__name__}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping handlers and drop open connections."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what callers read ----------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (only meaningful once started)."""
        if self._httpd is None:
            raise RuntimeError("server is not running")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """What to pass as the SDK client's base_url."""
        host = self._httpd.server_address[0] if self._httpd is not None else self._host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}{self.url_suffix}"

    @property
    def faults(self) -> FaultPlan | None:
        return self._faults

    def set_faults(self, plan: FaultPlan | None) -> None:
        """Swap the fault plan at runtime (None: no faults)."""
        self._faults = plan

    def stats(self) -> dict[str, Any]:
        """requests, in_flight, max_in_flight, by_status {status: n}, faults {name: n},
        connections (TCP connections accepted; far fewer than requests means keep-alive works)."""
        with self._lock:
            return {
                "requests": self._requests,
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "by_status": dict(self._by_status),
                "faults": dict(self._fault_counts),
                "connections": self._connections_opened,
            }

    def reset_stats(self) -> None:
        """Zero the counters and clear the log (requests still in flight stay counted)."""
        with self._lock:
            self._requests = 0
            self._max_in_flight = self._in_flight
            self._by_status.clear()
            self._fault_counts.clear()
            self._connections_opened = 0
            self._log.clear()

    def request_log(self) -> list[RequestRecord]:
        """A copy of the bounded request log, oldest first."""
        with self._lock:
            return list(self._log)

    # -- provider hooks -------------------------------------------------------------

    def _validate(self, headers: Mapping[str, str], body: object) -> Reply | None:
        """An error Reply when the completion request is invalid, else None."""
        raise NotImplementedError

    def _answer(self, request: dict[str, Any], text: str, serial: int) -> Reply:
        """The success Reply for a valid completion request."""
        raise NotImplementedError

    def _error(self, status: int, message: str) -> Reply:
        """An error Reply in the provider's error shape."""
        raise NotImplementedError

    def _models(self) -> Reply:
        raise NotImplementedError

    def _route(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> Reply | None:
        """Other endpoints (e.g. batches): a Reply, or None for 404. No faults or latency apply."""
        return None

    # -- request handling -----------------------------------------------------------

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
                self._connections_opened += 1
            else:
                self._connections.discard(conn)

    def _handle(self, h: _Handler) -> None:
        path = h.path.split("?", 1)[0]
        if path.startswith(_CONTROL_PREFIX):
            self._control(h, path)
            return
        arrived = time.monotonic()
        raw = h.read_body()
        headers = h.headers
        has_auth = bool(headers.get("x-api-key") or headers.get("authorization"))
        retry_header = headers.get("x-stainless-retry-count")
        with self._lock:
            self._requests += 1
            self._in_flight += 1
            in_flight = self._in_flight
            if in_flight > self._max_in_flight:
                self._max_in_flight = in_flight
            self._serial += 1
            serial = self._serial
        reply: Reply | None = None
        model: str | None = None
        fault: str | None = None
        try:
            reply, model, fault = self._dispatch(h.command, path, headers, raw, in_flight, serial)
        finally:
            # Book-keeping happens before the answer goes out, so a client that has its
            # answer also sees it in stats() and request_log().
            status = reply.status if reply is not None and reply.body is not None else None
            record = RequestRecord(
                method=h.command,
                path=path,
                model=model,
                has_auth=has_auth,
                status=status,
                fault=fault,
                retry_count=int(retry_header) if retry_header and retry_header.isdigit() else None,
                at=arrived,
            )
            with self._lock:
                self._in_flight -= 1
                if status is not None:
                    self._by_status[status] += 1
                self._log.append(record)
        if reply.body is None:
            h.reset_connection()
            return
        try:
            h.send_reply(reply, self.request_id_header, f"{self.request_id_prefix}{serial:024x}")
        except OSError:
            h.close_connection = True  # the client gave up (e.g. its timeout fired)

    def _dispatch(
        self, method: str, path: str, headers: Mapping[str, str], raw: bytes, in_flight: int, serial: int
    ) -> tuple[Reply, str | None, str | None]:
        """Returns (reply, model named in the request, injected fault or None)."""
        if path == self.models_path:
            if method != "GET":
                return self._error(405, f"{method} is not allowed on {path}"), None, None
            self._sleep(self.latency)
            return self._models(), None, None
        if path != self.completion_path:
            routed = self._route(method, path, headers, raw)
            if routed is not None:
                return routed, None, None
            return self._error(404, f"no route for {method} {path}"), None, None
        if method != "POST":
            return self._error(405, f"{method} is not allowed on {path}"), None, None

        try:
            body: object = json.loads(raw) if raw else None
        except ValueError:
            body = _INVALID_JSON
        model = body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else None

        plan = self._faults  # read once: set_faults may swap it meanwhile
        fault = plan.next_fault(in_flight) if plan is not None else "ok"
        if fault != "ok":
            with self._lock:  # counted now, so a stalled "timeout" shows before it answers
                self._fault_counts[fault] += 1
        if fault in _STATUS_FAULTS:
            reply = self._error(_STATUS_FAULTS[fault], f"injected fault {fault}")
            if fault == "429" and plan is not None and plan.retry_after is not None:
                reply = reply._replace(headers=reply.headers + (("retry-after", plan.retry_after),))
            return reply, model, fault
        if fault == "reset":
            return Reply(0, None), model, fault
        if fault == "timeout" and plan is not None:
            self._sleep(plan.slow_seconds)

        self._sleep(self.latency)
        if body is _INVALID_JSON:
            reply = self._error(400, "request body is not valid JSON")
        else:
            reply = self._validate(headers, body) or self._respond(body, serial)  # type: ignore[arg-type]
        if fault == "malformed" and reply.status == 200 and reply.body:
            reply = reply._replace(body=reply.body[: len(reply.body) // 2])
        return reply, model, (None if fault == "ok" else fault)

    def _respond(self, request: dict[str, Any], serial: int) -> Reply:
        try:
            text = self.responder(request)
        except Exception as exc:  # a test's responder bug should surface as a 500, not a hang
            return self._error(500, f"responder raised {type(exc).__name__}: {exc}")
        return self._answer(request, str(text), serial)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)  # returns early when the server stops

    def _control(self, h: _Handler, path: str) -> None:
        """Out-of-band endpoints for subprocess use; not counted in stats."""
        if path == _CONTROL_PREFIX + "stats":
            reply = Reply(200, dumps(self.stats()))
        elif path == _CONTROL_PREFIX + "reset" and h.command == "POST":
            h.read_body()
            self.reset_stats()
            reply = Reply(200, b"{}")
        else:
            reply = Reply(404, b'{"error":"unknown control endpoint"}')
        try:
            h.send_reply(reply, self.request_id_header, "control")
        except OSError:
            h.close_connection = True


_INVALID_JSON = object()


def serve_main(server_cls: type[LoopbackServer], argv: Sequence[str] | None = None) -> None:
    """Command-line entry: start `server_cls`, print its base URL, serve until killed."""
    parser = argparse.ArgumentParser(description=f"Run {server_cls.__name__} on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (the URL printed says which)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each answer is held")
    parser.add_argument("--script", default="", help='comma-separated faults for the first requests, e.g. "429,ok,500"')
    parser.add_argument("--rates", default="", help='e.g. "429=0.1,500=0.05"')
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-in-flight", type=int, default=None, help="answer 429 above this many in flight")
    parser.add_argument("--retry-after", default="0", help='retry-after header on 429s ("" omits it)')
    parser.add_argument("--slow-seconds", type=float, default=5.0, help="stall of the timeout fault")
    parser.add_argument("--log-size", type=int, default=1000)
    args = parser.parse_args(argv)

    script = [s.strip() for s in args.script.split(",") if s.strip()]
    rates = {k.strip(): float(v) for k, v in (item.split("=", 1) for item in args.rates.split(",") if item.strip())}
    plan = None
    if script or rates or args.max_in_flight is not None:
        plan = FaultPlan(
            script=script,
            rates=rates,
            seed=args.seed,
            max_in_flight=args.max_in_flight,
            retry_after=args.retry_after or None,
            slow_seconds=args.slow_seconds,
        )
    server = server_cls(latency=args.latency, faults=plan, host=args.host, port=args.port, log_size=args.log_size)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with server:
        print(server.base_url, flush=True)
        while not done.wait(0.5):
            pass
