"""`mlx-dpo train --events`: the structured channel the app reads instead of human log lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from mlx_dpo.cli import main
from mlx_dpo.train.events import JsonEvents, Reporter


def events_of(text: str) -> list[dict]:
    """Every stdout line must be one JSON event (nothing else may be printed there)."""
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(r, dict) and "event" in r for r in rows), rows
    return rows


def test_a_run_reports_start_progress_metrics_checkpoints_and_done(tiny_model, pairs_file, valid_file, tmp_path,
                                                                  capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", tiny_model, "--data", pairs_file, "--valid-data", valid_file, "--output",
                 str(run), "--iters", "4", "--batch-size", "4", "--save-every", "2", "--eval-every", "2",
                 "--events"]) == 0
    out, err = capsys.readouterr()
    events = events_of(out)
    kinds = [e["event"] for e in events]
    assert "training pairs" not in err  # the human lines travel as log events, not on stderr

    phases = [e["phase"] for e in events if e["event"] == "phase"]
    assert phases == ["data", "load", "reference", "train"]  # the data first: a run too big is refused before the weights
    start = next(e for e in events if e["event"] == "start")
    assert (start["step"], start["total_steps"], start["pairs"]) == (0, 4, 16)
    assert start["trainable_parameters"] > 0
    assert [e["step"] for e in events if e["event"] == "progress"] == [1, 2, 3, 4]
    rows = [e["row"] for e in events if e["event"] == "metrics"]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
    assert [r["step"] for r in rows if "eval/loss" in r] == [2, 4]
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [2, 4]
    assert all(os.path.isdir(e["path"]) for e in events if e["event"] == "checkpoint")
    logs = [e["text"] for e in events if e["event"] == "log"]
    assert any("16 training pairs, 4 steps" in t for t in logs)
    assert any(t.startswith("step 2: eval loss") for t in logs)
    done = events[-1]
    assert kinds.index("start") < kinds.index("progress") and done["event"] == "done"
    assert done["step"] == 4 and done["output"] == str(run) and done["loss"] == rows[-2]["loss"]
    # The same rows went to metrics.jsonl.
    saved = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert saved == rows


def test_a_bad_input_is_an_error_event_with_its_exit_status(tiny_model, tmp_path, capsys):
    assert main(["train", "--model", tiny_model, "--data", str(tmp_path / "missing.jsonl"), "--output",
                 str(tmp_path / "run"), "--events"]) == 2
    out, err = capsys.readouterr()
    *before, event = events_of(out)
    assert event == {"event": "error", "text": f"{tmp_path / 'missing.jsonl'}: no such file", "status": 2}
    assert [e["event"] for e in before] == ["phase"]  # the data is read first, before the weights load
    assert "error: " in err  # a person running the command still sees it
    assert not (tmp_path / "run").exists()


def test_sigint_reports_the_stop_and_the_checkpoint(tiny_model, pairs_file, tmp_path):
    """Stop after the first step: the trainer checkpoints, says so, and exits 130."""
    run = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mlx_dpo", "train", "--model", tiny_model, "--data", pairs_file,
                             "--output", str(run), "--iters", "200", "--batch-size", "2", "--events"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    events = []
    for line in proc.stdout:  # wait for the first finished step, then ask for a stop
        events.append(json.loads(line))
        if events[-1]["event"] == "progress":
            proc.send_signal(signal.SIGINT)
            break
    rest, _ = proc.communicate(timeout=300)
    events += events_of(rest)
    assert proc.returncode == 130
    stopped = events[-1]
    assert stopped["event"] == "stopped" and stopped["signal"] == "SIGINT" and stopped["status"] == 130
    assert stopped["checkpoint"] and os.path.isdir(stopped["checkpoint"])
    assert stopped["checkpoint"].startswith(str(run / "checkpoints"))


def test_reporters_default_to_silence_and_survive_a_closed_reader(tmp_path):
    lines = []
    Reporter(lines.append).log("hello")
    Reporter().log("nobody listens")
    assert lines == ["hello"]

    class Closed:
        def write(self, text):
            raise BrokenPipeError

        def flush(self):
            pass

    JsonEvents(Closed()).progress(1, 2)  # the app went away: training must go on


def test_a_lost_peer_sends_its_error_event_at_once_under_events(capsys, monkeypatch):
    """mlx.launch ends the other ranks as soon as one dies: the event must be out before the CLI's own."""
    from mlx_dpo.train import distributed, events

    monkeypatch.setattr(events, "_announce", False)
    distributed.peer_lost(1, "while step 2", RuntimeError("[ring] Connection to a peer was lost"))
    assert capsys.readouterr().out == ""  # no --events: nothing on stdout
    events.announce_errors()
    err = distributed.peer_lost(1, "while step 2", RuntimeError("[ring] Connection to a peer was lost"))
    out, stderr = capsys.readouterr()
    assert json.loads(out) == {"event": "error", "text": str(err), "status": 1}
    assert stderr == f"error: {err}\n" and err.reported
