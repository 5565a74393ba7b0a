"""Iterative DPO (`mlx-dpo iterate`): the rounds learn what the judge prefers, resume where they stopped,
and a bad judge or bad prompts stop with a clear error and nothing lost.

The end-to-end runs use the bundled demo model: it answers the demo prompts with short sentences whose
lengths vary and ends them itself, so a judge's preference (here: fewer words) is learnable in a round.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlx_dpo.cli import main
from mlx_dpo.demo import DEMO_PAIRS, DEMO_VALID
from mlx_dpo.errors import DataError, UsageError
from mlx_dpo.iterate.judges import (HumanJudge, JudgeFailed, ModelJudge, PythonJudge, checked_score, make_judge,
                                    parse_verdict, read_judge_prompt)
from mlx_dpo.iterate.prompts import Prompt, load_prompts
from mlx_dpo.iterate.rounds import IterateConfig, read_lines

from conftest import write_jsonl

CRASH_POINTS = Path(__file__).with_name("crash_points.py")
SHORTER = "def judge(messages, answer):\n    return -len(answer.split())\n"
TRAIN = ["--batch-size", "4", "--learning-rate", "5e-4", "--beta", "0.5", "--rpo-alpha", "1.0", "--lora-rank", "4",
         "--max-length", "64", "--lr-schedule", "constant", "--save-every", "1"]


def judge_file(tmp_path: Path, body: str = SHORTER, name: str = "judge.py") -> str:
    path = tmp_path / name
    path.write_text(body)
    return f"{path}:judge"


def iterate_args(out, judge, rounds=2, extra=()):
    return ["iterate", "--prompts", str(DEMO_PAIRS), "--valid-prompts", str(DEMO_VALID), "--judge", judge,
            "--rounds", str(rounds), "--samples", "4", "--prompts-per-round", "16", "--valid-limit", "20",
            "--max-tokens", "32", "--kl-samples", "1", "--output", str(out), *TRAIN, *extra]


@pytest.fixture(scope="module")
def shorter_run(tmp_path_factory):
    """Two rounds with a judge that prefers shorter answers."""
    tmp = tmp_path_factory.mktemp("iterate")
    judge = judge_file(tmp)
    out = tmp / "it"
    os.environ.setdefault("MLX_DPO_CACHE", str(tmp / "cache"))
    assert main(iterate_args(out, judge)) == 0
    return out, judge


def rounds_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------- it learns what the judge wants
def test_rounds_move_the_policy_the_way_the_judge_wants(shorter_run):
    out, _ = shorter_run
    reps = rounds_of(out)
    assert [r["round"] for r in reps] == [0, 1, 2]
    words = [r["heldout/answer_words"] for r in reps]
    scores = [r["heldout/score_mean"] for r in reps]
    assert words[2] < words[0] - 0.5, words  # shorter answers on held-out prompts after two rounds
    assert scores[2] > scores[0], scores     # the judge's score (minus the word count) rose
    assert reps[2]["heldout/win_rate_vs_start"] > 0.5
    for r in reps[1:]:
        assert r["pairs"] > 0 and r["train/steps"] > 0 and np.isfinite(r["train/loss"])
        assert r["heldout/kl_to_base"] is not None
    assert reps[0]["heldout/kl_to_base"] == 0.0  # round 0 is the base itself


def test_each_round_is_a_run_dir_with_valid_pairs(shorter_run, capsys):
    out, judge = shorter_run
    for r in (1, 2):
        rd = out / f"round_{r}"
        for name in ("config.yaml", "adapters.safetensors", "adapter_config.json", "metrics.jsonl",
                     "answers.jsonl", "judged.jsonl", "pairs.jsonl", "heldout.jsonl", "report.json"):
            assert (rd / name).exists(), rd / name
        assert main(["validate", str(rd / "pairs.jsonl")]) == 0
        for row in read_lines(rd / "pairs.jsonl"):
            chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
            assert len(chosen.split()) < len(rejected.split())  # best vs worst by the judge
            assert row["score_chosen"] > row["score_rejected"] and row["round"] == r and row["judge"] == judge
        answers, judged = read_lines(rd / "answers.jsonl"), read_lines(rd / "judged.jsonl")
        assert len(answers) == len(judged) == 16
        assert all(len(a["answers"]) == 4 and len(j["scores"]) == 4 for a, j in zip(answers, judged))
    import yaml
    cfg2 = yaml.safe_load((out / "round_2/config.yaml").read_text())
    assert cfg2["init_adapter"] == str(out / "round_1") and cfg2["reference"] == "base"
    # Each round answers its own slice of the prompts.
    first = {a["source"] for a in read_lines(out / "round_1/answers.jsonl")}
    second = {a["source"] for a in read_lines(out / "round_2/answers.jsonl")}
    assert not first & second


def test_a_rerun_continues_and_adds_rounds_without_redoing_any(shorter_run, capsys):
    out, judge = shorter_run
    before = {p: p.read_bytes() for p in out.glob("round_[12]/*.jsonl")}
    assert main(iterate_args(out, judge, rounds=2)) == 0
    assert "(done before)" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.glob("round_[12]/*.jsonl")} == before
    assert [r["round"] for r in rounds_of(out)] == [0, 1, 2]


def test_changed_settings_are_refused(shorter_run, capsys):
    out, judge = shorter_run
    args = iterate_args(out, judge)
    args[args.index("--samples") + 1] = "3"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "was started with samples 4 (now 3)" in err and "choose another --output" in err


# ---------------------------------------------------------------------- resume after a kill
def _run(args, kill=None, **env_vars):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **env_vars}
    cmd = [sys.executable, str(CRASH_POINTS), kill, "--", *args] if kill else [sys.executable, "-m", "mlx_dpo", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def _adapters(path: Path) -> dict:
    return {k: np.array(v) for k, v in mx.load(str(path)).items()}


@pytest.mark.slow
def test_a_killed_iterate_resumes_at_the_right_round_and_step(tmp_path):
    judge = judge_file(tmp_path)
    small = ["--prompts-per-round", "8", "--valid-limit", "4", "--iters", "4"]
    whole = _run(iterate_args(tmp_path / "whole", judge, extra=small))
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "killed"
    # Killed while appending the 3rd answers line of round 1 (a torn line), then in round 2's training.
    first = _run(iterate_args(out, judge, extra=small), kill="iterate-append:3")
    assert first.returncode == -9
    assert not (out / "round_1/answers.jsonl").read_bytes().endswith(b"\n")
    one = _run(iterate_args(out, judge, rounds=1, extra=small))
    assert one.returncode == 0, one.stderr
    assert "continuing after 2" in one.stderr
    second = _run(iterate_args(out, judge, extra=small), kill="step:3")
    assert second.returncode == -9
    last = _run(iterate_args(out, judge, extra=small))
    assert last.returncode == 0, last.stderr
    assert f"resumed from {out / 'round_2/checkpoints/step_0000002'} (step 2)" in last.stderr
    assert "round 1:" in last.stderr and "(done before)" in last.stderr
    for r in (1, 2):
        for name in ("answers.jsonl", "judged.jsonl", "pairs.jsonl"):
            strip = lambda rows: [{k: v for k, v in x.items() if k != "time"} for x in rows]  # noqa: E731
            assert strip(read_lines(out / f"round_{r}" / name)) == strip(read_lines(tmp_path / "whole" / f"round_{r}" / name))
        a, b = _adapters(out / f"round_{r}/adapters.safetensors"), _adapters(tmp_path / f"whole/round_{r}/adapters.safetensors")
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)  # bit-exact


SMALL = ["--prompts-per-round", "8", "--valid-limit", "4", "--iters", "2", "--log-every", "2"]  # one row: steps 1-2


def _rounds_here(out: Path) -> list[dict]:
    """rounds.jsonl with each adapter named relative to its iteration folder (two folders are compared)."""
    reps = rounds_of(out)
    for rep in reps:
        if rep.get("adapter"):
            rep["adapter"] = str(Path(rep["adapter"]).relative_to(out))
    return reps


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Two small rounds run straight through: what every interrupted run must end with."""
    tmp = tmp_path_factory.mktemp("straight")
    judge = judge_file(tmp)
    r = _run(iterate_args(tmp / "whole", judge, extra=SMALL), MLX_DPO_CACHE=str(tmp / "cache"))
    assert r.returncode == 0, r.stderr
    return _rounds_here(tmp / "whole"), judge


@pytest.mark.slow
def test_a_kill_between_the_last_checkpoint_and_trained_json_still_reports_the_trained_round(uninterrupted,
                                                                                            tmp_path):
    expected, judge = uninterrupted
    out = tmp_path / "killed"
    # Round 1 trained to its end (checkpoint and adapter written); trained.json is complete but not renamed.
    first = _run(iterate_args(out, judge, extra=SMALL), kill="trained-write:1")
    assert first.returncode == -9, first.stderr
    assert ckpt_latest(out / "round_1").name == "step_0000002" and not (out / "round_1/trained.json").exists()
    last = _run(iterate_args(out, judge, extra=SMALL))
    assert last.returncode == 0, last.stderr
    got = _rounds_here(out)
    assert got[1]["adapter"] == "round_1" and got[1]["train/steps"] == 2  # not the start model, not untrained
    assert got == expected


# (kill point, what it interrupts). Each entry is one process that continues where the one before it was
# killed and is killed further on; the counts are per process, so each names the first such point it reaches.
ITERATE_KILLS = [
    ("heldout-write:1", "round 0: the held-out answers written, not renamed"),
    ("rounds-write:1", "round 0: report.json written, rounds.jsonl not"),
    ("iterate-append:3", "round 1: the 3rd answers line half written"),
    ("pairs-write:1", "round 1: pairs.jsonl written, not renamed"),
    ("step:2", "round 1: the last optimizer step done, not logged or checkpointed"),
    ("checkpoint-saved:2", "round 1: the last checkpoint in place, the run dir's adapter not"),
    ("trained-write:1", "round 1: resumed at its end, trained.json not renamed"),
    ("report-write:1", "round 1: evaluated, report.json not renamed"),
    ("trained-write:1", "round 2: trained straight through, trained.json not renamed"),
    ("rounds-write:1", "round 2: report.json written, rounds.jsonl not"),
]


@pytest.mark.slow
def test_a_kill_at_any_point_then_a_rerun_ends_with_the_uninterrupted_rounds(uninterrupted, tmp_path):
    expected, judge = uninterrupted
    out = tmp_path / "killed"
    for point, what in ITERATE_KILLS:
        r = _run(iterate_args(out, judge, extra=SMALL), kill=point)
        assert r.returncode == -9, f"{point} ({what}) was not reached: rc {r.returncode}\n{r.stderr[-3000:]}"
        assert "Traceback" not in r.stderr
    last = _run(iterate_args(out, judge, extra=SMALL))
    assert last.returncode == 0, last.stderr
    assert _rounds_here(out) == expected  # every field, train metrics and held-out KL included


def ckpt_latest(run: Path) -> Path:
    from mlx_dpo.train.checkpoint import latest

    return latest(run)


# ---------------------------------------------------------------------- bad judges, bad prompts
def _small(out, judge, extra=()):
    return ["iterate", "--prompts", str(DEMO_PAIRS), "--judge", judge, "--rounds", "1", "--samples", "2",
            "--limit", "4", "--max-tokens", "8", "--output", str(out), *TRAIN, *extra]


def test_a_judge_that_cannot_be_imported_fails_before_anything_is_generated(tmp_path, capsys):
    out = tmp_path / "it"
    assert main(_small(out, "python:no_such_module_here:judge")) == 2
    err = capsys.readouterr().err
    assert "--judge python:no_such_module_here:judge: cannot import no_such_module_here (ModuleNotFoundError" in err
    assert not out.exists()
    assert main(_small(out, judge_file(tmp_path, "x = 1\n"))) == 2
    assert "has no 'judge'" in capsys.readouterr().err
    assert main(_small(out, judge_file(tmp_path, "raise RuntimeError('broken at import')\n", "j2.py"))) == 2
    assert "cannot import" in capsys.readouterr().err and not out.exists()
    assert main(_small(out, "gpt4")) == 2
    assert "expected python:MODULE:FUNCTION" in capsys.readouterr().err


@pytest.mark.parametrize("failure, message, extra", [
    ("raise KeyError('oops')", "raised KeyError: 'oops'", ()),
    ("return float('nan')", "returned nan", ()),
    ("return 'good'", "returned 'good' (str)", ()),
    # a judge that hangs once blocked iterate forever
    ("__import__('threading').Event().wait()", "gave no score within 0.5 s (--judge-timeout)",
     ("--judge-timeout", "0.5")),
])
def test_a_failing_judge_names_the_prompt_and_keeps_what_was_judged(tmp_path, capsys, failure, message, extra):
    calls = tmp_path / "calls"
    # From its 5th call on the judge fails: the 3rd prompt (2 answers each).
    spec = judge_file(tmp_path, f"import pathlib\nCOUNT = pathlib.Path({str(calls)!r})\n\n"
                                "def judge(messages, answer):\n"
                                "    n = int(COUNT.read_text()) if COUNT.exists() else 0\n"
                                "    COUNT.write_text(str(n + 1))\n"
                                f"    if n >= 4:\n        {failure}\n"
                                "    return 1.0\n")
    out = tmp_path / "it"
    assert main(_small(out, spec, extra)) == 2
    err = capsys.readouterr().err
    assert message in err and f"{DEMO_PAIRS}:3" in err and "Round 1 stopped" in err
    assert len(read_lines(out / "round_1/answers.jsonl")) == 4  # every answer kept
    assert len(read_lines(out / "round_1/judged.jsonl")) == 2   # the prompts judged before it
    assert not (out / "round_1/pairs.jsonl").exists()
    # Fixed, the same command continues from the prompt that failed.
    Path(spec.rsplit(":", 1)[0]).write_text("def judge(messages, answer):\n    return -len(answer)  # fixed\n")
    assert main(_small(out, spec, extra)) == 0
    assert "continuing after 2" in capsys.readouterr().err
    assert len(read_lines(out / "round_1/judged.jsonl")) == 4


def test_a_judge_timeout_is_not_swallowed_by_the_judge_and_leaves_no_timer(tmp_path):
    import signal

    hangs = make_judge(judge_file(tmp_path, "import threading\n\ndef judge(messages, answer):\n    try:\n"
                                            "        threading.Event().wait()\n    except Exception:\n"
                                            "        return 1.0\n"), timeout=0.2)
    p = Prompt([{"role": "user", "content": "What is 2+2?"}], "f.jsonl:7")
    before = signal.getsignal(signal.SIGALRM)
    with pytest.raises(JudgeFailed) as e:
        hangs.rank(p, ["4", "5"])
    assert str(e.value) == (f"judge {hangs.spec} gave no score within 0.2 s (--judge-timeout) on the prompt at "
                            "f.jsonl:7, answer 1 of 2 ('What is 2+2?'); make it return sooner or raise "
                            "--judge-timeout (0: no limit)")
    quick = make_judge(judge_file(tmp_path, SHORTER, "quick.py"), timeout=0.2)
    assert quick.rank(p, ["4", "it is 4"]) == [-1.0, -3.0]
    assert signal.getsignal(signal.SIGALRM) is before and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_checked_score_accepts_numbers_only():
    p = Prompt([{"role": "user", "content": "hi"}], "f.jsonl:7")
    assert checked_score(3, "j", p) == 3.0 and checked_score(np.float32(0.5), "j", p) == 0.5
    assert checked_score(mx.array(2.0), "j", p) == 2.0
    for bad, text in ((None, "returned None"), ("1", "returned '1'"), (float("inf"), "returned inf"), ([1], "[1]")):
        with pytest.raises(JudgeFailed, match="f.jsonl:7"):
            checked_score(bad, "j", p)
        try:
            checked_score(bad, "j", p)
        except JudgeFailed as e:
            assert text in str(e)


def test_bool_scores_are_refused_as_non_numbers():
    p = Prompt([{"role": "user", "content": "hi"}], "f.jsonl:1")
    with pytest.raises(JudgeFailed, match=r"returned True \(bool\)"):
        checked_score(True, "j", p)


# ---------------------------------------------------------------------- pairwise judges
P = Prompt([{"role": "user", "content": "What is 2 + 2?"}], "p.jsonl:1")


def test_model_judge_asks_both_orders_so_a_position_bias_cancels():
    always_a = ModelJudge("model:x", "x", generate=lambda msgs: "A")
    assert always_a.compare(P, "4", "five") == 0.5 and always_a.asked == 2

    def shorter(msgs):
        text = msgs[0]["content"]
        a = text.split("[Answer A]\n")[1].split("\n\n[Answer B]")[0]
        b = text.split("[Answer B]\n")[1].split("\n\nWhich")[0]
        return "A" if len(a) < len(b) else "B" if len(b) < len(a) else "TIE"

    judge = ModelJudge("model:x", "x", generate=shorter)
    assert judge.compare(P, "4", "four") == 1.0 and judge.compare(P, "four", "4") == 0.0
    assert judge.rank(P, ["4", "four", "it is four"]) == [1.0, 0.5, 0.0]
    mumbler = ModelJudge("model:x", "x", generate=lambda msgs: "hmm")
    assert mumbler.compare(P, "4", "5") == 0.5 and mumbler.unparsed == 2


def test_parse_verdict():
    assert parse_verdict("A") == 1.0 and parse_verdict(" b.") == 0.0 and parse_verdict("Tie") == 0.5
    assert parse_verdict("Answer B is better") == 0.0  # "Answer" is not the verdict A
    assert parse_verdict("neither") is None and parse_verdict("") is None


def test_judge_prompt_file_is_checked(tmp_path, tiny_model):
    good = tmp_path / "good.txt"
    good.write_text("Q: {prompt}\n1: {answer_a}\n2: {answer_b}\nReply A, B or TIE. {{literal}}")
    assert "{answer_a}" in read_judge_prompt(str(good))
    bad = tmp_path / "bad.txt"
    bad.write_text("Q: {prompt} {answer_a}")
    with pytest.raises(UsageError, match=r"must contain \{answer_b\}"):
        read_judge_prompt(str(bad))
    braces = tmp_path / "braces.txt"
    braces.write_text("{prompt} {answer_a} {answer_b} {other}")
    with pytest.raises(UsageError, match="must be doubled"):
        read_judge_prompt(str(braces))
    assert isinstance(make_judge(f"model:{tiny_model}", str(good)), ModelJudge)
    with pytest.raises(UsageError, match="model judge only"):
        make_judge(judge_file(tmp_path), str(good))
    with pytest.raises(UsageError, match=f"^--judge model:{tmp_path / 'no-model'}: .*no such model folder"):
        make_judge(f"model:{tmp_path / 'no-model'}")


def test_model_judge_runs_a_real_model(tiny_model):
    judge = make_judge(f"model:{tiny_model}")
    scores = judge.rank(P, ["4", "four", "It is 4."])
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores) and abs(sum(scores) - 1.5) < 1e-9
    assert judge.asked == 6  # 3 pairs, both orders
    judge.close()


def test_human_judge_shuffles_sides_and_maps_picks_back():
    shown = []

    def ask(prompt, first, second):
        shown.append((first, second))
        return "a" if first == "good" else "b"

    judge = HumanJudge("human", ask, seed=3)
    assert all(judge.compare(P, "good", "bad") == 1.0 for _ in range(10))
    assert {s[0] for s in shown} == {"good", "bad"}  # both presentation orders occurred
    assert HumanJudge("human", lambda p, a, b: "tie").rank(P, ["x", "y"]) == [0.5, 0.5]


def test_human_judge_in_the_terminal(tmp_path, monkeypatch, capsys):
    import io
    out = tmp_path / "it"
    monkeypatch.setattr(sys, "stdin", io.StringIO("x\n" + "a\n" * 4))  # "x" is no answer: asked again
    assert main(_small(out, "human", ("--limit", "2", "--temperature", "1.5"))) == 0
    err = capsys.readouterr().err
    differ = sum(a["answers"][0] != a["answers"][1] for a in read_lines(out / "round_1/answers.jsonl"))
    assert differ > 0  # (identical answers are a tie without asking)
    assert err.count("better answer? a / b / t (tie)") == differ + 1
    assert len(read_lines(out / "round_1/judged.jsonl")) == 2
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(_small(tmp_path / "it2", "human", ("--limit", "2", "--temperature", "1.5"))) == 2
    assert "no more input" in capsys.readouterr().err


# ---------------------------------------------------------------------- prompts and settings
def test_prompt_files(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", ["Hi there", {"prompt": "Hello", "system": "Be brief."},
                                           {"messages": [{"role": "user", "content": "a"},
                                                         {"role": "assistant", "content": "b"},
                                                         {"role": "user", "content": "c"}]}])
    ps = load_prompts(f)
    assert [p.messages[-1]["content"] for p in ps] == ["Hi there", "Hello", "c"]
    assert ps[1].messages[0] == {"role": "system", "content": "Be brief."} and ps[2].source == f"{f}:3"
    pairs = load_prompts(DEMO_PAIRS, limit=5)
    assert len(pairs) == 5 and pairs[0].source == f"{DEMO_PAIRS}:1"
    bad = write_jsonl(tmp_path / "bad.jsonl", ["ok", 7, {"prompt": ""},
                                               {"messages": [{"role": "user", "content": "a"},
                                                             {"role": "assistant", "content": "b"}]}])
    with pytest.raises(DataError) as e:
        load_prompts(bad)
    assert [x.split(": ", 1)[0] for x in e.value.errors] == [f"{bad}:2", f"{bad}:3", f"{bad}:4"]
    assert "must end with a user message" in e.value.errors[2]
    with pytest.raises(UsageError, match="no such file"):
        load_prompts(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("change, message", [
    ({"samples": 1}, "--samples: must be at least 2"),
    ({"temperature": 0.0}, "--temperature: must be > 0"),
    ({"rounds": 0}, "--rounds: must be at least 1"),
    ({"reference": "mine"}, "--reference: expected one of base, previous"),
    ({"train": {"data": "x.jsonl"}}, "iterate sets data of each round itself"),
])
def test_settings_are_checked(change, message):
    cfg = IterateConfig(prompts="p.jsonl", judge="human", output="out", **change)
    with pytest.raises(UsageError, match=message):
        cfg.validate()


def test_bad_training_flag_fails_before_generation(tmp_path, capsys):
    out = tmp_path / "it"
    assert main(_small(out, judge_file(tmp_path), ("--lora-rank", "0"))) == 2
    assert "lora_rank: must be a positive integer" in capsys.readouterr().err and not out.exists()


def test_output_that_is_not_an_iteration_is_refused(tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(_small(out, judge_file(tmp_path))) == 2
    assert "is not an iteration folder" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine" and len(list(out.iterdir())) == 1


def test_demo_reward_is_a_judge():
    judge = make_judge("python:mlx_dpo.demo.reward:judge")
    assert isinstance(judge, PythonJudge)
    p = Prompt([{"role": "user", "content": "What is 7 plus 8?"}], "x:1")
    good, curt = judge.rank(p, ["Sure! 7 plus 8 is 15.", "Obviously 15. Next question."])
    assert good == 1.0 and curt < good
    with pytest.raises(JudgeFailed, match="raised ValueError"):
        judge.rank(Prompt([{"role": "user", "content": "Tell me a story."}], "x:2"), ["Once"])


# ---------------------------------------------------------------------- the training settings iterate relies on
def test_reference_base_scores_the_base_while_training_continues_from_the_adapter(tiny_model, pairs_file, tmp_path):
    from mlx_dpo.config import TrainConfig
    from mlx_dpo.train.session import Session
    from mlx_dpo.train.trainer import Trainer

    def cfg(name, **kw):
        return TrainConfig(model=tiny_model, data=pairs_file, batch_size=4, cache_dir=str(tmp_path / f"cache-{name}"),
                           **kw).validate()

    first = tmp_path / "first"
    Trainer(TrainConfig(model=tiny_model, data=pairs_file, output=str(first), iters=3, batch_size=4,
                        learning_rate=5e-3).validate()).setup().train()
    base = Session.for_training(cfg("base"))
    start = Session.for_training(cfg("start", init_adapter=str(first)))
    from_base = Session.for_training(cfg("from-base", init_adapter=str(first), reference="base"))
    for side in ("chosen", "rejected"):
        assert np.array_equal(from_base.ref_train[side], base.ref_train[side])  # the base's numbers, exactly
        assert not np.allclose(start.ref_train[side], base.ref_train[side])     # the adapter changed them
    # The policy itself starts from the adapter: its log-probs are the start reference's.
    policy = from_base.evaluate(from_base.train_pairs, ref=start.ref_train)
    assert abs(policy["rewards/margins"]) < 1e-4 and abs(policy["loss"] - np.log(2)) < 1e-4


def test_rpo_adds_the_chosen_answers_mean_nll():
    from mlx_dpo.train.losses import Loss, Scores

    x = Scores(*(mx.array(v) for v in ([-4.0, -9.0], [-6.0, -5.0], [-5.0, -8.0], [-5.0, -6.0], [2.0, 3.0],
                                        [4.0, 1.0], [1.0, 1.0])))
    plain, rpo = Loss("sigmoid", 0.5), Loss("sigmoid", 0.5, rpo_alpha=0.7)
    assert np.allclose(np.array(rpo.losses(x)), np.array(plain.losses(x)) + 0.7 * np.array([4.0 / 2, 9.0 / 3]))
    stats = [np.array(loss.stats(x, loss.losses(x))) for loss in (plain, rpo)]
    assert np.array_equal(stats[0][1:], stats[1][1:])  # rewards and log-probs unchanged: only the loss moves
    assert Loss("kto", rpo_alpha=1.0).ignored_settings()


def test_rounds_are_listed_as_runs(shorter_run):
    from mlx_dpo.runs import list_runs, read_rounds

    out, _ = shorter_run
    names = {r.name for r in list_runs(out.parent)}
    assert {f"{out.name}/round_1", f"{out.name}/round_2"} <= names
    assert [r["round"] for r in read_rounds(out)] == [0, 1, 2]


def test_readme_shows_the_model_judges_prompt():
    from mlx_dpo.iterate.judges import DEFAULT_JUDGE_PROMPT

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("```text\n", 1)[1].split("  ```", 1)[0]
    shown = "\n".join(line[2:] if line.startswith("  ") else line for line in block.splitlines())
    assert shown == DEFAULT_JUDGE_PROMPT


def test_read_iteration_settings(tmp_path):
    from mlx_dpo import read_iteration_settings

    (tmp_path / "it").mkdir()
    (tmp_path / "it" / "iterate.yaml").write_text("judge: human\nrounds: 3\ntrain:\n  beta: 0.2\n")
    assert read_iteration_settings(tmp_path / "it") == {"judge": "human", "rounds": 3, "train": {"beta": 0.2}}
    assert read_iteration_settings(tmp_path) == {}  # not an iteration
    (tmp_path / "it" / "iterate.yaml").write_text("judge: [unclosed\n")
    assert read_iteration_settings(tmp_path / "it") == {}  # unreadable: nothing, never a traceback


# ---------------------------------------------------------------------- the chat template's variables (issue #26)
@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    """A tiny model with Qwen3's real template, which reads enable_thinking (tests/real_material.py)."""
    import real_material

    try:
        real_material.material_dir()
    except real_material.Unavailable as e:
        pytest.skip(f"real templates unavailable (the package index cannot be reached): {e}")
    return str(real_material.build_real_model("qwen3", tmp_path_factory.mktemp("qwen3") / "m"))


# Qwen3's generation prompt with enable_thinking false: the assistant's turn opens with an empty think block.
EMPTY_THINK = "<|im_start|>assistant\n<think>\n\n</think>\n\n"


def test_a_round_answers_and_trains_with_the_template_variables_and_a_continuation_may_not_change_them(
        qwen3, tmp_path, monkeypatch, capsys):
    import yaml

    import mlx_dpo.data.template as template
    import mlx_dpo.iterate.sampling as sampling

    # What the round generated from (sampling's prompts) and what it trained on (the pairs' rendered prompts).
    answered, trained = [], []
    real_prompt, real_texts = sampling.prompt_tokens, template._pair_texts

    def prompt_spy(tokenizer, messages):
        ids = real_prompt(tokenizer, messages)
        answered.append(tokenizer.decode(ids))
        return ids

    def texts_spy(tokenizer, pair):
        texts = real_texts(tokenizer, pair)
        trained.append(texts.prompt)
        return texts

    monkeypatch.setattr(sampling, "prompt_tokens", prompt_spy)
    monkeypatch.setattr(template, "_pair_texts", texts_spy)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [f"What is {i} + {i}?" for i in range(4)])
    # Distinct scores for distinct answers, so every prompt makes a pair.
    judge = judge_file(tmp_path, "def judge(messages, answer):\n    return float(sum(map(ord, answer)) % 101)\n")
    out = tmp_path / "it"

    def iterate(kwargs: str, rounds: int = 1) -> int:
        return main(["iterate", "--model", qwen3, "--prompts", prompts, "--judge", judge, "--rounds", str(rounds),
                     "--samples", "3", "--max-tokens", "4", "--output", str(out), "--batch-size", "2", "--iters", "1",
                     "--lora-rank", "4", "--max-length", "64", "--chat-template-kwargs", kwargs])

    assert iterate('{"enable_thinking": false}') == 0
    assert len(answered) == 4 and all(p.endswith(EMPTY_THINK) for p in answered), answered
    assert trained and all(p.endswith(EMPTY_THINK) for p in trained), trained
    [report] = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert report["pairs"] > 0 and report["train/steps"] == 1
    saved = yaml.safe_load((out / "round_1/config.yaml").read_text())
    assert json.loads(saved["chat_template_kwargs"]) == {"enable_thinking": False}
    capsys.readouterr()

    # A continuation (a second round) with other variables is refused as another changed training flag is,
    # before anything is generated.
    answered.clear()
    assert iterate('{"enable_thinking": true}', rounds=2) == 2
    err = capsys.readouterr().err
    assert ("""trained with chat_template_kwargs '{"enable_thinking": false}' (now '{"enable_thinking": true}')"""
            in err and "leave out --chat-template-kwargs" in err), err
    assert not answered and not (out / "round_2").exists()
    # With the same variables it continues, and round 2 answers with them too.
    assert iterate('{"enable_thinking": false}', rounds=2) == 0
    assert len(answered) == 4 and all(p.endswith(EMPTY_THINK) for p in answered), answered
