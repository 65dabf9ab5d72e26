"""The local model's worker process: one llama.cpp model, loaded once, answering requests.

Run by path (``python _llama_worker.py MODEL.gguf N_CTX``), not imported: it needs only the
standard library and llama-cpp-python, so it starts without importing the lab. It reads one JSON
request a line on stdin and writes one JSON reply a line on a private copy of stdout (native code
that prints to file descriptor 1 lands on stderr instead, so it cannot corrupt a reply). A crash in
llama.cpp ends this process only; the parent turns that into an error row and starts another.

Requests: ``{"op": "chat", "messages": [...], "params": {...}}`` (params go to
``create_chat_completion`` unchanged), ``{"op": "chat_prompt", "messages": [...]}``,
``{"op": "ping", "payload": ...}``. Replies: ``{"ok": ...}`` or ``{"error": "...", "kind": "..."}``.
The first line written is ``{"ready": true}`` once the model is loaded (or an error); each request
is acknowledged (``{"ack": true}``) as soon as it is read, so the parent knows whether a worker
that died had taken it (an error for that call) or died idle (resend to a fresh worker).
"""

from __future__ import annotations

import json
import os
import sys


def _replier():
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # anything native code prints goes to stderr, never into the replies
    sys.stdout = sys.stderr

    def reply(obj: dict) -> None:
        # numpy scalars (log-probabilities come as float32) become plain numbers
        out.write(json.dumps(obj, default=lambda v: v.item() if hasattr(v, "item") else str(v)) + "\n")
        out.flush()

    return reply


def _chat_prompt(llm, messages):
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        raise LookupError("the model file carries no chat template")
    eos = llm._model.token_get_text(llm.token_eos())
    bos = llm._model.token_get_text(llm.token_bos())
    text = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)(messages=messages).prompt
    return {"text": text, "tokens": len(llm.tokenize(text.encode(), add_bos=False, special=True))}


def main(argv: list[str]) -> int:
    reply = _replier()
    path, n_ctx = argv[0], int(argv[1])
    logits_all = len(argv) > 2 and argv[2] == "logits_all"  # log-probabilities need a score row per position
    try:
        from llama_cpp import Llama

        llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=os.cpu_count() or 2, verbose=False, logits_all=logits_all)
    except Exception as exc:
        reply({"error": f"{type(exc).__name__}: {exc}", "kind": "load"})
        return 1
    reply({"ready": True, "pid": os.getpid()})
    for line in sys.stdin:  # EOF: the parent is gone or closed us
        req = json.loads(line)
        reply({"ack": True})  # taken: a crash from here on is this request's
        op = req.get("op")
        try:
            if op == "chat":
                result = llm.create_chat_completion(messages=req["messages"], **req.get("params", {}))
            elif op == "chat_prompt":
                result = _chat_prompt(llm, req["messages"])
            elif op == "ping":
                result = req.get("payload")
            else:
                raise LookupError(f"unknown op {op!r}")
        except ValueError as exc:  # e.g. a prompt longer than the context window
            reply({"error": str(exc), "kind": "bad_request"})
        except Exception as exc:
            reply({"error": f"{type(exc).__name__}: {exc}", "kind": "other"})
        else:
            reply({"ok": result})
    llm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
