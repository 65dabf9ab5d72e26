"""Prompt files: loading, rendering, versions, and errors that say where the problem is."""

from __future__ import annotations

import pytest

import lab
from lab.prompts import load_prompt

GOOD = """\
task: sentiment
escape_hatch: UNSURE
params: {temperature: 0.5, max_tokens: 16}
variants:
  persona:
    system: You are a world-class sentiment analyst.
    user: "Classify: {{ text }}"
  honest:
    user: "I sort reviews for my shop. Say positive, negative or UNSURE. Review: {{ text }}"
    params: {temperature: 0}
  chat:
    messages:
      - {role: system, content: Be brief.}
      - {role: user, content: "Hi, {{ name }}"}
      - {role: assistant, content: Hello!}
      - {role: user, content: "{{ text }}"}
"""


def test_variants_render_their_messages_with_the_inputs_variables(write):
    prompt = load_prompt(write("p.yaml", GOOD))
    assert list(prompt.variants) == ["persona", "honest", "chat"]
    msgs = prompt.variant("persona").render({"text": "great"})
    assert msgs == [
        {"role": "system", "content": "You are a world-class sentiment analyst."},
        {"role": "user", "content": "Classify: great"},
    ]
    assert [m["role"] for m in prompt.variant("chat").render({"text": "x", "name": "Ann"})] == [
        "system", "user", "assistant", "user"]
    assert prompt.variant("chat").variables == {"text", "name"}


def test_variant_params_override_the_files_params(write):
    prompt = load_prompt(write("p.yaml", GOOD))
    assert prompt.variant("persona").params == {"temperature": 0.5, "max_tokens": 16}
    assert prompt.variant("honest").params == {"temperature": 0, "max_tokens": 16}


def test_editing_one_variant_changes_only_its_version(write):
    before = load_prompt(write("p.yaml", GOOD)).versions
    after = load_prompt(write("p.yaml", GOOD.replace("world-class", "seasoned"))).versions
    assert after["persona"] != before["persona"]
    assert after["honest"] == before["honest"]
    # whitespace in the YAML layout does not matter; the content does
    again = load_prompt(write("p.yaml", GOOD.replace("world-class", "seasoned") + "\n\n")).versions
    assert again == after


def test_escape_hatch_is_detected_as_a_whole_word_in_any_case(write):
    hatch = load_prompt(write("p.yaml", GOOD)).variant("persona").escape_hatch
    assert hatch.detect("UNSURE")
    assert hatch.detect("I am unsure.")
    assert hatch.detect('"Unsure"')
    assert not hatch.detect("positive")
    assert not hatch.detect("UNSURENESS is a word")
    assert not hatch.detect(None)


def test_malformed_yaml_names_the_file_and_line(write):
    path = write("bad.yaml", "task: x\nvariants:\n  a:\n    user: [unclosed\n  b: {user: hi}\n")
    with pytest.raises(lab.PromptFileError) as err:
        load_prompt(path)
    assert str(path) in str(err.value)
    assert "line 5" in str(err.value) or "line 4" in str(err.value)


def test_unknown_field_names_the_field_and_line(write):
    path = write("p.yaml", "task: x\nvariants:\n  a:\n    user: hi\n    temprature: 0.2\n")
    with pytest.raises(lab.PromptFileError) as err:
        load_prompt(path)
    msg = str(err.value)
    assert "variants.a.temprature" in msg and "line 5" in msg and "unknown field" in msg


def test_wrong_types_and_ranges_are_reported_per_field(write):
    path = write("p.yaml", "task: x\nparams: {temperature: hot}\nvariants:\n  a: {user: hi}\n")
    with pytest.raises(lab.PromptFileError, match=r"line 2, params: .*temperature"):
        load_prompt(path)


def test_unknown_variant_lists_the_ones_that_exist(write):
    prompt = load_prompt(write("p.yaml", GOOD))
    with pytest.raises(lab.PromptFileError, match=r"no variant 'expert'.*\['chat', 'honest', 'persona'\]"):
        prompt.variant("expert")


def test_a_sandbox_escape_in_a_template_is_refused_when_the_file_loads(write):
    path = write("p.yaml", "task: x\nvariants:\n  a:\n    user: \"{{ ''.__class__.__mro__[1].__subclasses__() }}\"\n")
    with pytest.raises(lab.PromptFileError, match=r"variants\.a\.user: template reads '__\w+'.*sandbox"):
        load_prompt(path)


def test_a_sandbox_escape_through_the_attr_filter_is_refused_when_the_file_loads(write):
    path = write("p.yaml", "task: x\nvariants:\n  a:\n    user: \"{{ text|attr('__class__') }}\"\n")
    with pytest.raises(lab.PromptFileError, match="template reads '__class__'"):
        load_prompt(path)


def test_a_dunder_built_at_render_time_is_still_blocked_by_the_sandbox(write):
    prompt = load_prompt(write("p.yaml", "task: x\nvariants:\n  a:\n    user: \"{{ text[name] }}\"\n"))
    with pytest.raises(lab.PromptFileError, match="with input 'r1'.*'__class__'"):
        prompt.variant("a").render({"text": "hi", "name": "__class__"}, input_id="r1")


def test_missing_variable_at_render_names_variant_and_input(write):
    prompt = load_prompt(write("p.yaml", GOOD))
    with pytest.raises(lab.PromptFileError, match=r"variant 'persona' user template with input 'r7'.*'text'"):
        prompt.variant("persona").render({}, input_id="r7")


def test_template_syntax_error_is_reported_with_the_variant(write):
    path = write("p.yaml", "task: x\nvariants:\n  a:\n    user: \"{{ text \"\n")
    with pytest.raises(lab.PromptFileError, match=r"line 3: variants\.a\.user: template syntax error"):
        load_prompt(path)


def test_missing_file_and_binary_file_are_clear_errors(write, tmp_path):
    with pytest.raises(lab.PromptFileError, match="prompt file not found"):
        load_prompt(tmp_path / "nope.yaml")
    with pytest.raises(lab.PromptFileError, match="binary"):
        load_prompt(write("b.yaml", b"\x00\x01\x02task"))


def test_bundled_sentiment_prompt_has_persona_and_honest_variants():
    prompt = load_prompt("prompts/sentiment.yaml")
    assert {"persona", "honest"} <= set(prompt.variants)
    assert prompt.variant("honest").escape_hatch.text == "UNSURE"
