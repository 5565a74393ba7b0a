"""`mlx-dpo compare`: both sides answer, the judge decides, the counts, interval, blind order and ranking."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from conftest import write_jsonl
from mlx_dpo.cli import main
from mlx_dpo.compare import run as compare_run
from mlx_dpo.compare.duels import balanced_order, read_verdicts
from mlx_dpo.compare.stats import rank_run_dirs, rank_runs, read_compare, summarize, wilson
from mlx_dpo.iterate.judges import ModelJudge

JUDGE = '''
def judge(messages, answer):
    return {"good": 1.0, "bad": 0.0}.get(answer, 0.5)
'''


@pytest.fixture
def fake_run(tmp_path, tiny_model):
    """A run dir that passes every check before generation (its weights are never loaded: answers are canned)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"model: {tiny_model}\n")
    (run / "adapter_config.json").write_text(json.dumps(
        {"fine_tune_type": "lora", "num_layers": 2, "lora_parameters": {"rank": 4, "scale": 20.0, "dropout": 0.0}}))
    (run / "adapters.safetensors").write_bytes(b"")
    return run


def canned(monkeypatch, a: list[str], b: list[str]):
    """Side A (the adapter) answers `a`, side B (the base) answers `b`, one answer per prompt."""
    def generate(side, prompts, cfg, report):
        texts = b if side.adapter is None else a
        assert len(texts) == len(prompts)
        return [[(t, len(t))] for t in texts]

    monkeypatch.setattr(compare_run, "generate_answers", generate)


def prompts_file(tmp_path, n: int) -> str:
    return write_jsonl(tmp_path / "prompts.jsonl", [f"question {i}" for i in range(n)])


def test_a_python_judge_on_a_constructed_case_gives_the_exact_counts(fake_run, tmp_path, monkeypatch, capsys):
    canned(monkeypatch, ["good", "good", "good", "bad", "bad", "same"], ["ok", "ok", "ok", "ok", "ok", "same"])
    judge = tmp_path / "judge.py"
    judge.write_text(JUDGE)
    assert main(["compare", "--adapter", str(fake_run), "--prompts", prompts_file(tmp_path, 6),
                 "--judge", f"{judge}:judge", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["wins"], r["ties"], r["losses"], r["n"], r["prompts"]) == (3, 1, 2, 6, 6)
    assert r["win_rate"] == pytest.approx(3.5 / 6)
    lo, hi = r["ci95"]
    assert (lo, hi) == pytest.approx(wilson(3.5 / 6, 6)) and lo < r["win_rate"] < hi
    assert r["a"] == str(fake_run.resolve()) and r["b"] == "base"
    assert r["mean_tokens"] == {"a": pytest.approx(22 / 6), "b": pytest.approx(14 / 6)}
    assert [e["answer_a"] for e in r["largest_wins"]] == ["good"] * 3
    assert [e["answer_a"] for e in r["largest_losses"]] == ["bad"] * 2
    # Every verdict is in the run dir, one line each, and nothing else was written there.
    rows = read_verdicts(r["file"])
    assert len(rows) == 6 and r["file"].startswith(str(fake_run / "compare-vs-base-"))
    assert sorted(p.name for p in fake_run.iterdir()) == sorted(
        ["config.yaml", "adapter_config.json", "adapters.safetensors", r["file"].rpartition("/")[2]])
    assert summarize(rows) | {"file": r["file"], "decoding": "greedy"} == r


def test_a_judge_that_always_prefers_the_first_answer_ends_at_half(fake_run, tmp_path, monkeypatch):
    """The blind order is balanced: side A is shown first in exactly half of the duels."""
    canned(monkeypatch, [f"a{i}" for i in range(8)], [f"b{i}" for i in range(8)])
    asked = []

    def first(prompt, shown_first, shown_second):
        asked.append((shown_first, shown_second))
        return "a"

    cfg = compare_run.CompareConfig(adapter=str(fake_run), prompts=prompts_file(tmp_path, 8), judge="human")
    r = compare_run.run_compare(cfg, ask=first)
    assert (r["wins"], r["ties"], r["losses"], r["win_rate"]) == (4, 0, 4, 0.5)
    assert sum(a.startswith("a") for a, _ in asked) == 4  # each answer shown without its side's name
    assert [row["shown_first"] for row in read_verdicts(r["file"])].count("a") == 4


def test_a_model_judge_biased_to_slot_a_is_asked_both_orders_and_ties(fake_run, tmp_path, monkeypatch):
    canned(monkeypatch, ["x", "y", "z"], ["p", "q", "r"])
    judge = ModelJudge("model:stub", "stub", generate=lambda messages: "A")
    cfg = compare_run.CompareConfig(adapter=str(fake_run), prompts=prompts_file(tmp_path, 3), judge="model:stub")
    r = compare_run.run_compare(cfg, judge=judge)
    assert (r["ties"], r["win_rate"], judge.asked) == (3, 0.5, 6)


def test_the_blind_view_records_a_persons_picks_for_the_runs_tab(fake_run, tmp_path, monkeypatch):
    """What the app does: answers on its engine thread, picks from a view that shows no side names."""
    canned(monkeypatch, ["good 1", "good 2", "good 3", "same"], ["meh 1", "meh 2", "meh 3", "same"])
    cfg = compare_run.CompareConfig(adapter=str(fake_run), prompts=prompts_file(tmp_path, 4), judge="human")
    comparison = compare_run.prepare_comparison(cfg)
    assert not comparison.path.exists()  # nothing is recorded before the first pick
    for duel in comparison.duels:
        pick = "tie" if duel.identical else "a" if duel.first.startswith("good") else "b"
        comparison.record_pick(duel, pick)
    result = comparison.result()
    assert (result["wins"], result["ties"], result["losses"]) == (3, 1, 0)
    assert read_compare(result["file"]) == {k: v for k, v in result.items() if k != "decoding"}
    ranked = rank_run_dirs([fake_run])
    assert [e["name"] for e in ranked] == [str(fake_run.resolve()), "base"] and ranked[0]["rating"] > 0
    with pytest.raises(ValueError, match="a pick is one of"):
        comparison.duels[0].score_of_pick("left")


def test_both_sides_answer_with_the_template_variables_the_run_trained_with(fake_run, tiny_model, monkeypatch):
    """A run trained with --chat-template-kwargs is compared on prompts rendered the same way, and so is the base."""
    import mlx_dpo.iterate.sampling as sampling

    (fake_run / "config.yaml").write_text(f"model: {tiny_model}\n"
                                          "chat_template_kwargs: '{\"enable_thinking\": false}'\n")
    cfg = compare_run.CompareConfig(adapter=str(fake_run), judge="python:m:f").validate()
    sides = compare_run.resolve_sides(cfg)
    assert [s.template_kwargs for s in sides] == [{"enable_thinking": False}] * 2

    loaded = []

    class Loaded(Exception):
        pass

    class Policy:
        @classmethod
        def load(cls, *args):
            loaded.append(args)
            raise Loaded  # what it was loaded with is all this test needs

    monkeypatch.setattr(sampling, "Policy", Policy)
    for side in sides:
        with pytest.raises(Loaded):
            compare_run.generate_answers(side, [], cfg, compare_run.Reporter())
    assert [args[-1] for args in loaded] == [{"enable_thinking": False}] * 2


def test_the_names_the_app_needs_load_no_mlx():
    import subprocess
    import sys

    code = ("import sys\nfrom mlx_dpo import (CompareConfig, Duel, HEALTH_KINDS, compare_files, rank_run_dirs, "
            "rank_runs, read_compare, read_samples, read_verdicts, summarize_compare)\n"
            "print('mlx.core' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


def test_balanced_order_shows_each_side_first_half_the_time():
    for n in (1, 2, 7, 50):
        order = balanced_order(n, seed=3)
        assert sum(order) == (n + 1) // 2 and len(order) == n
    assert balanced_order(50, 3) == balanced_order(50, 3) != balanced_order(50, 4)


def test_an_adapter_against_its_identical_copy_is_half_even_with_a_slot_biased_judge(tiny_model, pairs_file,
                                                                                      valid_file, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--model", tiny_model, "--data", pairs_file, "--valid-data", valid_file, "--output",
                 str(run), "--iters", "2", "--batch-size", "4", "--learning-rate", "1e-2", "--sample-prompts", "0"]) == 0
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    cfg = compare_run.CompareConfig(adapter=str(run), against=str(copy), judge="human", limit=4, max_tokens=12)
    r = compare_run.run_compare(cfg, ask=lambda *shown: "a")
    assert (r["win_rate"], r["ties"], r["n"]) == (0.5, 4, 4)  # the run's held-out prompts, answered alike
    assert all(row.get("identical") for row in read_verdicts(r["file"]))


def test_compare_on_the_command_line_answers_judges_and_reports(tiny_model, pairs_file, valid_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", tiny_model, "--data", pairs_file, "--valid-data", valid_file, "--output",
                 str(run), "--iters", "2", "--batch-size", "4", "--learning-rate", "1e-2", "--sample-prompts", "0"]) == 0
    judge = tmp_path / "judge.py"
    judge.write_text("def judge(messages, answer):\n    return len(answer)\n")
    capsys.readouterr()
    assert main(["compare", "--adapter", str(run), "--judge", f"{judge}:judge", "--limit", "5", "--max-tokens", "8",
                 "--samples", "2", "--temperature", "1.0"]) == 0
    out = capsys.readouterr().out
    assert f"A = {run.resolve()}" in out and "B = base" in out and "5 prompts (2 sample(s) at T=1)" in out
    assert "win rate of A" in out and "95% interval" in out and "mean answer length" in out
    (record,) = list(run.glob("compare-vs-base-*.jsonl"))
    rows = read_verdicts(record)
    assert len(rows) == 10 and {(r["index"], r["sample"]) for r in rows} == {(i, k) for i in range(10) for k in [i % 2]}
    assert all(r["score"] == (1.0 if r["score_a"] > r["score_b"] else 0.0 if r["score_a"] < r["score_b"] else 0.5)
               for r in rows)


@pytest.mark.parametrize("flags,needle", [
    (["--samples", "2", "--temperature", "0"], "--temperature: must be > 0 with --samples 2"),
    (["--samples", "0"], "--samples: must be at least 1"),
    (["--against", "SAME"], "the same adapter as --adapter"),
    (["--judge", "nonsense"], "--judge nonsense: expected"),
])
def test_bad_compare_settings_are_one_line_errors(fake_run, tmp_path, capsys, flags, needle):
    flags = [str(fake_run) if f == "SAME" else f for f in flags]
    args = ["compare", "--adapter", str(fake_run), "--prompts", prompts_file(tmp_path, 2),
            "--judge", "python:mlx_dpo.demo.reward:judge", *flags]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not list(fake_run.glob("compare-*.jsonl"))


def test_a_missing_adapter_folder_is_named(tmp_path, capsys):
    assert main(["compare", "--adapter", str(tmp_path / "nope"), "--prompts", prompts_file(tmp_path, 2),
                 "--judge", "python:mlx_dpo.demo.reward:judge"]) == 2
    assert "adapter folder not found" in capsys.readouterr().err


# ---------------------------------------------------------------------- the numbers
@pytest.mark.parametrize("p,n", [(0.0, 10), (1.0, 10), (0.5, 1), (0.3, 200), (0.9, 7)])
def test_the_wilson_interval_contains_the_rate_and_stays_in_0_1(p, n):
    lo, hi = wilson(p, n)
    assert 0.0 <= lo <= p <= hi <= 1.0 and hi - lo > 0
    assert wilson(0.5, 0) == (0.0, 1.0)


def verdicts(a: str, b: str, wins: int, ties: int, losses: int) -> list[dict]:
    return ([{"a": a, "b": b, "score": 1.0}] * wins + [{"a": a, "b": b, "score": 0.5}] * ties
            + [{"a": a, "b": b, "score": 0.0}] * losses)


def test_runs_are_ranked_by_bradley_terry_with_intervals():
    rows = (verdicts("/runs/strong", "base", 32, 0, 8) + verdicts("/runs/even", "base", 10, 20, 10)
            + verdicts("base", "/runs/weak", 30, 0, 10) + verdicts("/runs/perfect", "base", 10, 0, 0))
    ranked = rank_runs(rows)
    names = [e["name"] for e in ranked]
    assert names.index("/runs/strong") < names.index("/runs/even") < names.index("/runs/weak")
    by = {e["name"]: e for e in ranked}
    assert by["base"]["rating"] == 0.0 and by["base"]["ci95"] == [0.0, 0.0]
    assert by["/runs/even"]["rating"] == pytest.approx(0.0, abs=1e-9)
    # One opponent: the rating is close to the Elo of the win rate (the weak prior pulls it in a little).
    assert by["/runs/strong"]["rating"] == pytest.approx(400 * math.log10(0.8 / 0.2), rel=0.05)
    assert by["/runs/weak"]["rating"] == pytest.approx(-400 * math.log10(0.75 / 0.25), rel=0.05)
    for e in ranked:
        assert e["ci95"][0] <= e["rating"] <= e["ci95"][1]
    assert by["/runs/strong"]["ci95"][0] > 0 > by["/runs/weak"]["ci95"][1]
    assert math.isfinite(by["/runs/perfect"]["rating"]) and by["/runs/perfect"]["rating"] > 0  # won everything
    assert (by["/runs/strong"]["wins"], by["/runs/strong"]["losses"], by["/runs/strong"]["n"]) == (32, 8, 40)
    assert (by["base"]["wins"], by["base"]["ties"], by["base"]["n"]) == (8 + 10 + 30 + 0, 20, 130)


def test_without_the_base_ratings_are_relative_to_their_mean():
    ranked = rank_runs(verdicts("x", "y", 30, 0, 10), anchor="base")
    assert [e["name"] for e in ranked] == ["x", "y"]
    assert ranked[0]["rating"] == pytest.approx(-ranked[1]["rating"]) and ranked[0]["rating"] > 0
    assert rank_runs([]) == []
