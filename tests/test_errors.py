"""Errors are data: a usage error carries the setting it concerns, a data error its problems as records; the
CLI prints them as before and the app reads their fields (no parsing of engine prose in tui/)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mlx_dpo.cli import main
from mlx_dpo.config import build_config
from mlx_dpo.errors import DataError, Problem, UsageError

ROOT = Path(__file__).resolve().parent.parent


def test_a_config_error_names_its_key_and_prints_as_before():
    with pytest.raises(UsageError) as e:
        build_config({}, {"model": "m", "data": "d.jsonl", "output": "o", "iters": 0})
    assert (e.value.key, e.value.detail) == ("iters", "must be a positive integer, got 0")
    assert str(e.value) == "config: iters: must be a positive integer, got 0"


def test_a_config_file_error_names_the_file_and_keeps_the_key(tmp_path):
    from mlx_dpo.config import load_yaml

    cfg = tmp_path / "train.yaml"
    cfg.write_text("beta: high\n", encoding="utf-8")
    with pytest.raises(UsageError) as e:
        build_config(load_yaml(cfg), {"model": "m", "data": "d.jsonl", "output": "o"}, {"beta": str(cfg)})
    assert e.value.key == "beta" and str(e.value) == f"{cfg}: beta: expected a number, got 'high'"
    cfg.write_text("betta: 0.1\n", encoding="utf-8")
    with pytest.raises(UsageError) as e:
        load_yaml(cfg)
    assert e.value.key == "betta" and str(e.value) == f"{cfg}: betta: unknown config key"


def test_a_data_error_holds_problem_records_in_the_printed_order(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"prompt": "q", "chosen": "a", "rejected": "a"}\n{"prompt": "q", "chosen": "a"}\n', encoding="utf-8")
    from mlx_dpo.data.pairs import load_pairs_strict

    with pytest.raises(DataError) as e:
        load_pairs_strict(p)
    assert [(q.source, q.line, q.field) for q in e.value.problems] == [(str(p), 1, "chosen,rejected"),
                                                                      (str(p), 2, "rejected")]
    assert e.value.errors == [str(q) for q in e.value.problems]
    assert e.value.errors[0] == f"{p}:1: chosen,rejected: chosen and rejected are identical"


def test_the_error_event_carries_the_key_or_the_problems(tiny_model, tmp_path, capsys):
    """The app reads these fields of the trainer child's error event instead of its text."""
    assert main(["train", "--model", tiny_model, "--data", "x.jsonl", "--output", str(tmp_path / "r1"),
                 "--beta", "-1", "--events"]) == 2
    event = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert event["event"] == "error" and event["key"] == "beta" and event["status"] == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "q"}\n', encoding="utf-8")
    assert main(["train", "--model", tiny_model, "--data", str(bad), "--output", str(tmp_path / "r2"),
                 "--events"]) == 2
    event = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert event["problems"] == [{"file": str(bad), "line": 2, "field": "chosen", "fix": None,
                                  "message": "missing (expected a string or a list of messages)"}]
    assert event["skippable"] is True  # one valid pair: --skip-invalid would train on it
    assert not (tmp_path / "r2").exists()


def test_a_problem_with_a_fix_prints_it_after_the_message():
    assert str(Problem("f.jsonl", "bad", 3, "chosen", fix="pass --skip-invalid")) == \
        "f.jsonl:3: chosen: bad; pass --skip-invalid"
    assert UsageError(Problem("config", "too small", None, "beta", "raise it")).detail == "too small; raise it"


def test_the_app_reads_no_engine_error_text():
    """No string matching on error messages in tui/: errors reach it as fields (key, problems)."""
    offenders = []
    for path in (ROOT / "tui").rglob("*.py"):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"(startswith\(|re\.(match|search)\(|\bin (str\(e\)|message\.error|e\.args))", line) and \
                    re.search(r"\berr(or)?s?\b|\bstr\(e\)|message\.error", line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []
