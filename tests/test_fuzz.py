"""Fuzzing the places text comes in (model outputs, prompt files, input sets, the recovery file) with
arbitrary text: lone surrogates, NUL, invalid UTF-8, huge and deeply nested values. A bounded number of
examples here; ``python bench/fuzz.py`` runs many more and says how many ran clean."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fuzz_props as fp

BOUNDED = settings(max_examples=12, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def server():
    from tests.loopback import OpenAIServer

    with OpenAIServer() as srv:
        yield srv


def test_any_model_output_is_logged_once_and_shown(server):
    @BOUNDED
    @given(fp.texts)
    def prop(text):
        fp.check_model_output(server, text)

    prop()


def test_any_bytes_inside_a_servers_json_answer_become_an_answer_or_an_error_row(server):
    @BOUNDED
    @given(st.binary(max_size=64))
    def prop(raw):
        fp.check_raw_body(server, raw)

    prop()


_row = st.fixed_dictionaries({"id": st.one_of(fp.texts, st.integers(), st.none()), "text": st.one_of(fp.texts, st.none())})


@BOUNDED
@given(st.lists(_row, max_size=4))
def test_any_jsonl_input_set_runs_or_is_refused_in_one_error(rows):
    content = "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8", "surrogatepass")
    fp.check_file("in.jsonl", content, "p.yaml", fp.PROMPT)


@BOUNDED
@given(st.one_of(st.binary(max_size=300), fp.texts.map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_any_bytes_as_an_input_set_or_a_prompt_file_are_refused_in_one_error(content):
    fp.check_file("in.yaml", content, "p.yaml", fp.PROMPT)
    fp.check_file("p.yaml", content, "in.yaml", "- {id: r1, text: hi}\n")


@BOUNDED
@given(fp.texts)
def test_any_text_as_a_template_renders_or_is_refused_in_one_error(template):
    prompt = f"task: t\nvariants:\n  a:\n    user: {json.dumps(template)}\n".encode("utf-8", "surrogatepass")
    fp.check_file("p.yaml", prompt, "in.yaml", "- {id: r1, text: hi}\n")


def test_a_recovery_file_torn_at_any_byte_or_mixed_with_garbage_never_stops_the_lab(tmp_path):
    base, blob = fp.recovery_blob(tmp_path)

    @BOUNDED
    @given(st.integers(0, len(blob)), st.binary(max_size=80))
    def prop(cut, garbage):
        fp.check_recovery(base, blob[:cut], tmp_path / "work.db")
        fp.check_recovery(base, garbage + b"\n" + blob, tmp_path / "work.db")

    prop()
