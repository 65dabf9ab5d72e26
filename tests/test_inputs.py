"""Input sets from YAML, CSV and JSONL, and the errors they raise before any model call."""

from __future__ import annotations

import pytest

import lab
from lab.inputs import load_inputs


def test_yaml_rows_carry_variables_tags_and_expected(write):
    s = load_inputs(write("in.yaml", "- {id: a, text: hi, expected: positive}\n- {id: b, tags: [edge, unanswerable], text: ''}\n"))
    assert [r.id for r in s] == ["a", "b"]
    assert s.rows[0].vars == {"text": "hi"} and s.rows[0].tags == ("normal",) and s.rows[0].expected == "positive"
    assert s.rows[1].tags == ("edge", "unanswerable")
    assert [r.id for r in s.tagged("edge")] == ["b"]


def test_csv_and_jsonl_give_the_same_rows_as_yaml(write):
    csv_set = load_inputs(write("in.csv", "id,text,tags,expected\na,hi,,positive\nb,\"x, y\",edge;unanswerable,\n"))
    jsonl_set = load_inputs(write("in.jsonl", '{"id": "a", "text": "hi", "expected": "positive"}\n\n'
                                              '{"id": "b", "text": "x, y", "tags": ["edge", "unanswerable"]}\n'))
    for s in (csv_set, jsonl_set):
        assert [(r.id, r.vars, r.tags, r.expected) for r in s] == [
            ("a", {"text": "hi"}, ("normal",), "positive"),
            ("b", {"text": "x, y"}, ("edge", "unanswerable"), None),
        ]


def test_duplicate_ids_name_both_lines(write):
    with pytest.raises(lab.InputSetError, match=r"duplicate input id 'a' \(lines 1 and 3\)"):
        load_inputs(write("in.yaml", "- id: a\n  text: x\n- id: a\n  text: y\n"))


def test_row_without_id_names_its_line(write):
    with pytest.raises(lab.InputSetError, match=r"in\.jsonl line 2: row has no 'id'"):
        load_inputs(write("in.jsonl", '{"id": 1, "text": "a"}\n{"text": "b"}\n'))


def test_empty_set_and_unknown_format_and_missing_file(write, tmp_path):
    with pytest.raises(lab.InputSetError, match="empty"):
        load_inputs(write("in.yaml", "[]\n"))
    with pytest.raises(lab.InputSetError, match="unknown input set format '.txt'"):
        load_inputs(write("in.txt", "hello"))
    with pytest.raises(lab.InputSetError, match="input set not found"):
        load_inputs(tmp_path / "missing.csv")


def test_malformed_csv_and_json_name_the_line(write):
    with pytest.raises(lab.InputSetError, match=r"line 3: row has more fields"):
        load_inputs(write("in.csv", "id,text\na,b\nc,d,e\n"))
    with pytest.raises(lab.InputSetError, match=r"line 1: invalid JSON"):
        load_inputs(write("in.jsonl", "{id: 1}\n"))


def test_nan_values_are_refused(write):
    with pytest.raises(lab.InputSetError, match="'score' is nan"):
        load_inputs(write("in.yaml", "- {id: a, score: .nan}\n"))


def test_missing_template_variable_lists_rows_and_variants(write):
    s = load_inputs(write("in.yaml", "- {id: a, text: hi}\n- {id: b, body: oops}\n"))
    with pytest.raises(lab.InputSetError, match=r"line 2, row 'b' lacks \['text'\], used by variant 'persona'"):
        s.check_variables({"persona": frozenset({"text"})})


def test_bundled_sentiment_inputs_include_tagged_edge_cases():
    s = load_inputs("prompts/sentiment_inputs.yaml")
    tags = {t for r in s for t in r.tags}
    assert {"normal", "edge", "unanswerable"} <= tags
    assert any(r.vars["text"] == "" for r in s)
