"""The Train tab's data-parallel runs (mlx.launch): command building, checks before starting, the
per-rank figures, the verdict on a launched run, and one real 2-process run started from the app.

The real run costs ~25 s here (two MLX processes plus mlx.launch's I/O loop share two cores); the
other tests use no training process, or a stand-in launcher script that prints what mlx.launch prints
(and the trainer's JSON events where rank 0 would send them).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
from textual.widgets import Button, Input, Static

import tui.training
from tui.app import MlxDpoApp
from tui.messages import TrainingMetrics
from tui.panes.train_pane import TrainPane
from tui.training import launch_outcome, rank_exits, train_command

from conftest import synthetic_pairs, write_jsonl
from test_tui import SIZE, text_of, wait_for

PY = [sys.executable, "-m", "mlx_dpo", "train", "--events"]
ARGS = ["--model", "m", "--data", "d.jsonl", "--output", "runs/x", "--batch-size", "4"]


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def test_train_command_one_process_many_and_hostfile(tmp_path):
    assert train_command(ARGS) == [*PY, *ARGS]  # exactly the one-process command of before
    assert train_command(ARGS, processes=1, hostfile=None, launcher="/x/mlx.launch") == [*PY, *ARGS]
    assert train_command(ARGS, processes=2, launcher="/x/mlx.launch") == [
        "/x/mlx.launch", "-n", "2", "--backend", "ring", "--", *PY, *ARGS]
    assert train_command(ARGS, processes=3, launcher="/x/mlx.launch", port=40000) == [
        "/x/mlx.launch", "-n", "3", "--backend", "ring", "-p", "40000", "--", *PY, *ARGS]
    # A hostfile names the hosts (and maybe its backend): no -n, no --backend.
    assert train_command(ARGS, hostfile="hosts.json", launcher="/x/mlx.launch") == [
        "/x/mlx.launch", "--hostfile", "hosts.json", "--", *PY, *ARGS]
    # By default the launcher is the one next to this Python.
    assert train_command(ARGS, processes=2)[0] == str(Path(sys.executable).parent / "mlx.launch")


def hosts(tmp_path, name, content) -> str:
    p = tmp_path / name
    p.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(p)


async def test_each_bad_distribution_setting_is_refused_and_nothing_starts(tiny_model, pairs_file, tmp_path,
                                                                          hf_home, monkeypatch):
    two = {"backend": "ring", "hosts": [{"ssh": "mac1.local", "ips": ["192.168.1.10"]},
                                        {"ssh": "mac2.local", "ips": ["192.168.1.11"]}]}
    three = [{"ssh": f"mac{i}.local", "ips": [f"10.0.0.{i}"]} for i in range(3)]  # the plain-list form
    cases = [  # (processes, hosts file, batch size, expected message)
        ("0", "", "4", "processes: expected a positive whole number, got '0'"),
        ("two", "", "4", "processes: expected a positive whole number, got 'two'"),
        ("-2", "", "4", "processes: expected a positive whole number, got '-2'"),
        ("2", "", "3", "batch size 3 cannot be split evenly over 2 processes"),
        ("1", str(tmp_path / "nope.json"), "4", f"hosts file {tmp_path / 'nope.json'}: not found"),
        ("1", hosts(tmp_path, "bad.json", "{hosts: ["), "4", "bad.json: not valid JSON"),
        ("1", hosts(tmp_path, "empty.json", {"hosts": []}), "4", "empty.json: lists no hosts"),
        ("1", hosts(tmp_path, "empty-list.json", []), "4", "empty-list.json: lists no hosts"),
        ("1", hosts(tmp_path, "noips.json", [{"ssh": "a"}, {"ssh": "b"}]), "4", 'host 1 (a) has no "ips"'),
        ("1", hosts(tmp_path, "three.json", three), "4", "batch size 4 cannot be split evenly over 3 processes"),
        ("2", hosts(tmp_path, "three2.json", three), "6", "the hosts file lists 3 host(s)"),
    ]
    runs = tmp_path / "runs"
    app = MlxDpoApp(model=tiny_model, data=pairs_file, runs_root=str(runs))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        pane.query_one("#train-output", Input).value = str(runs / "r")

        async def start(processes, hostfile, batch) -> str:
            app.clear_notifications()
            pane.query_one("#train-processes", Input).value = processes
            pane.query_one("#train-hostfile", Input).value = hostfile
            pane.query_one("#train-batch_size", Input).value = batch
            await pilot.click("#train-start")
            await pilot.pause(0.1)
            assert pane.process is None and not app.training_running  # nothing was started
            return " | ".join(n.message for n in app._notifications if n.severity == "error")

        for processes, hostfile, batch, expected in cases:
            assert expected in await start(processes, hostfile, batch), (processes, hostfile, batch)
        # No mlx.launch anywhere: said before starting, for -n and for a hostfile alike.
        monkeypatch.setattr(tui.training, "find_launcher", lambda: None)
        assert "mlx.launch not found" in await start("2", "", "4")
        assert "mlx.launch not found" in await start("1", hosts(tmp_path, "two.json", two), "4")
        # The same form with good settings gets as far as launching (recorded here, not run).
        launched = []
        monkeypatch.setattr(pane, "launch", lambda *a, **kw: launched.append(kw))
        assert await start("1", "", "3") == ""  # one process needs no launcher
        monkeypatch.setattr(tui.training, "find_launcher", lambda: "/x/mlx.launch")
        assert await start("2", "", "4") == ""
        assert await start("", hosts(tmp_path, "two.json", two), "4") == ""
        assert launched == [{"processes": 1, "hostfile": None}, {"processes": 2, "hostfile": None},
                            {"processes": 2, "hostfile": str(tmp_path / "two.json")}]
    assert not runs.exists()


def test_the_checks_pass_good_settings(tmp_path):
    from tui.training import check_distribution

    good = hosts(tmp_path, "hosts.json", {"hosts": [{"ssh": "a", "ips": ["1.2.3.4"]},
                                                    {"ssh": "b", "ips": ["1.2.3.5"]}]})
    assert check_distribution("", "", 3) == (1, None)
    assert check_distribution("4", "", 8) == (4, None)
    assert check_distribution("1", good, 4) == (2, good)
    assert check_distribution("2", good, 2) == (2, good)
    jaccl = hosts(tmp_path, "jaccl.json", {"backend": "jaccl", "hosts": [{"ssh": "a"}, {"ssh": "b"}]})
    assert check_distribution("", jaccl, 2) == (2, jaccl)  # only the ring backend needs IP addresses


ROW = {"step": 3, "loss": 0.69, "rewards/accuracies": 0.5, "rewards/margins": 0.01, "tokens_per_second": 1210.4,
       "peak_memory_gb": 0.012}


async def test_per_rank_figures_only_for_data_parallel_rows(tiny_model, tmp_path, hf_home):
    app = MlxDpoApp(model=tiny_model, runs_root=str(tmp_path / "runs"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        ranks = pane.query_one("#train-ranks", Static)
        pane.post_message(TrainingMetrics([ROW]))
        await pilot.pause(0.2)
        assert "loss 0.6900" in text_of(app, "#train-status")
        assert not ranks.display and text_of(app, "#train-ranks") == ""  # nothing extra for one process
        pane.post_message(TrainingMetrics([{**ROW, "ranks": 2, "rank_tokens_per_second": [612.4, 598.0],
                                            "rank_peak_memory_gb": [0.0123, 2.5]}]))
        await pilot.pause(0.2)
        assert ranks.display and ranks.region.height == 1
        assert text_of(app, "#train-ranks") == "2 processes · rank 0: 612 tok/s, 13 MB · rank 1: 598 tok/s, 2.50 GB"
        assert "1210 tok/s" in text_of(app, "#train-status")  # the run's total stays on the status line


WARN = "\x1b[33m[WARN] Node with rank {} exited with code {} \x1b[0m"


def test_verdicts_on_launched_runs(tmp_path):
    lost = "error: rank 0: lost the connection to another rank while step 3 ([ring] Connection to a peer was lost)"
    hung = "error: rank 0: no answer from the other ranks for 6s while step 2; a process of this run has died"
    killed = "[WARN] Node with rank 1 was killed"
    assert rank_exits([WARN.format(1, 1), killed.replace("1", "0", 1)]) == {1: 1, 0: None}

    code, text = launch_outcome([lost], ["[WARN] Node with rank 0 exited with code 1", killed], [], 0, False, False,
                                tmp_path, 2)
    assert code == 1 and "training failed" in text and lost in text and "rank 1 was killed" in text
    code, text = launch_outcome([hung], ["[WARN] Node with rank 0 exited with code 75"], [], 0, False, False, tmp_path,
                                2)
    assert code == 1 and "no answer from the other ranks" in text and "exited with code 75" in text
    code, text = launch_outcome([], [killed], [], 0, False, False, tmp_path, 2)
    assert code == 137 and "killed" in text
    # Stopped: every rank exited 130 (or was ended by the launcher); a checkpoint is named if there is one.
    stopped = ["[WARN] Node with rank 1 exited with code 130", "[WARN] Node with rank 0 exited with code 130"]
    assert launch_outcome([], stopped, [], -2, True, False, tmp_path, 2) == (
        130, "training stopped before its first checkpoint")
    (tmp_path / "checkpoints" / "step_0000004").mkdir(parents=True)
    code, text = launch_outcome([], stopped, [], -2, True, False, tmp_path, 2)
    assert code == 130 and f"checkpoint saved in {tmp_path / 'checkpoints'}" in text
    # mlx.launch exits 0 whatever the ranks did: success needs rank 0's "done" event.
    assert launch_outcome([], ["done: step 4, loss 0.6"], [], 0, False, True, tmp_path, 2)[0] == 0
    code, text = launch_outcome([], [], ["loading"], 0, False, False, tmp_path, 2)
    assert code != 0 and "training failed" in text
    unreachable = [WARN.format(1, 255), WARN.format(0, 143)]
    code, text = launch_outcome([], unreachable, ["Permission denied (publickey).", *unreachable], 0, False, False,
                                tmp_path, 2)
    assert code == 1 and "rank 1 exited with code 255" in text and text.endswith("Permission denied (publickey).")


FAKE_LAUNCHER = '''#!{python}
import json, sys, time
def event(**fields):  # what rank 0 of `mlx-dpo train --events` writes on stdout
    print(json.dumps(fields), flush=True)
event(event="log", text="data-parallel over 2 processes: global batch 4, 2 pairs per process")
time.sleep(0.5)
LOST = ("rank 0: lost the connection to another rank while step 2 ([ring] Connection to a peer was lost); "
        "a process of this run died or its machine went away. The run stopped; resume it with --resume.")
# The CLI's error event besides its stderr line, in either order (a lost peer sends its event at once).
if {event_first}:
    event(event="error", text=LOST, status=1)
print("error: " + LOST, file=sys.stderr, flush=True)
if not {event_first}:
    event(event="error", text=LOST, status=1)
print("\\x1b[33m[WARN] Node with rank 1 was killed \\x1b[0m", file=sys.stderr, flush=True)
print("\\x1b[33m[WARN] Node with rank 0 exited with code 1 \\x1b[0m", file=sys.stderr, flush=True)
sys.exit(0)  # as mlx.launch does, whatever its ranks did
'''


def use_stand_in_launcher(tmp_path, monkeypatch, script: str) -> None:
    """Make the app launch `script` (a Python program) where it would run mlx.launch."""
    fake = tmp_path / "mlx.launch"
    fake.write_text(script)
    fake.chmod(0o755)
    monkeypatch.setattr(tui.training, "find_launcher", lambda: str(fake))


@pytest.mark.parametrize("event_first", [True, False], ids=["event-then-line", "line-then-event"])
async def test_a_failed_rank_is_named_although_the_launcher_exits_0(event_first, tiny_model, pairs_file, tmp_path,
                                                                   hf_home, monkeypatch):
    use_stand_in_launcher(tmp_path, monkeypatch, FAKE_LAUNCHER.format(python=sys.executable, event_first=event_first))
    app = MlxDpoApp(model=tiny_model, data=pairs_file, runs_root=str(tmp_path / "runs"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        pane.query_one("#train-output", Input).value = str(tmp_path / "runs" / "f")
        pane.query_one("#train-processes", Input).value = "2"
        await pilot.click("#train-start")
        await wait_for(pilot, lambda: pane.process is not None and not app.training_running, timeout=20)
        status = text_of(app, "#train-status")
        assert status.startswith("training failed (rank 0 exited with code 1; rank 1 was killed): "
                                 "error: rank 0: lost the connection to another rank"), status
        assert any(n.severity == "error" and "lost the connection" in n.message for n in app._notifications)
        # Resume follows what the run dir holds: this run died before its first checkpoint.
        assert pane.query_one("#train-resume", Button).disabled is True
        assert "\x1b" not in "".join(pane.process.tail)  # the launcher's colours are not shown as escapes
        log = list(pane.process.tail)
        assert "data-parallel over 2 processes: global batch 4, 2 pairs per process" in log  # a log event's text
        assert not any(line.startswith("{") for line in log)  # events are read, not shown as JSON
        assert len([line for line in log if line.startswith("error: rank 0: lost")]) == 1  # shown once


@pytest.mark.slow
async def test_two_processes_from_the_app_end_to_end(tiny_model, tmp_path, hf_home):
    runs = tmp_path / "runs"
    data = write_jsonl(tmp_path / "train.jsonl", synthetic_pairs(8, seed=1))
    app = MlxDpoApp(model=tiny_model, data=data, runs_root=str(runs))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        run_dir = runs / "dp"
        for field, value in (("output", str(run_dir)), ("iters", "3"), ("batch_size", "2"), ("max_length", "64"),
                             ("lora_rank", "4"), ("learning_rate", "1e-3"), ("processes", "2")):
            pane.query_one(f"#train-{field}", Input).value = value
        await pilot.click("#train-start")
        assert pane.process is not None and pane.process.processes == 2
        await wait_for(pilot, lambda: not app.training_running, timeout=150)
        status = text_of(app, "#train-status")
        assert status == f"training finished on 2 processes: adapter in {run_dir}", "\n".join(pane.process.tail)
        assert (run_dir / "adapters.safetensors").exists()
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [1, 2, 3] and all(r["ranks"] == 2 for r in rows)
        ranks = text_of(app, "#train-ranks")
        assert ranks.startswith("2 processes · rank 0: ") and " · rank 1: " in ranks and ranks.endswith((" GB", " MB"))
        assert pane.query_one("#train-ranks", Static).display
        log = "\n".join(pane.process.tail)
        assert "data-parallel over 2 processes" in log and "Traceback" not in log


# A stand-in for mlx.launch with two "ranks" that say which way a stop reached them. Local ranks (-n) take
# SIGINT; behind a hostfile they stand for `ssh -tt` clients: a Ctrl-C byte on stdin stops the remote rank
# cleanly, while a SIGINT to the ssh client itself would drop the connection (exit 255, no checkpoint).
STOP_LAUNCHER = r'''#!PYTHON
import os, signal, subprocess, sys, threading, time
remote = "--hostfile" in sys.argv
RANK = """
import os, signal, sys
i = sys.argv[1]
def say(text):
    os.write(1, f"rank {i}: {text}\\n".encode())  # one write: lines of the two ranks do not interleave
def on_int(*_):
    say("got SIGINT")
    os._exit(255 if REMOTE else 130)
signal.signal(signal.SIGINT, on_int)
say("training")
while True:
    data = os.read(0, 1)
    if data == b"\\x03":
        say("got Ctrl-C")
        os._exit(130)
    if not data:
        signal.pause()
""".replace("REMOTE", str(remote))
interrupted = threading.Event()
def on_int(*_):
    os.write(1, b"launcher: got SIGINT\n")  # one write, as the ranks do: print() may split off the newline
    interrupted.set()
signal.signal(signal.SIGINT, on_int)
ranks = [subprocess.Popen([sys.executable, "-c", RANK, str(i)], stdin=subprocess.PIPE) for i in range(2)]
def forward():
    while data := os.read(0, 1024):
        for r in ranks:
            r.stdin.write(data)
            r.stdin.flush()
threading.Thread(target=forward, daemon=True).start()
for i, r in enumerate(ranks):
    while r.poll() is None:
        time.sleep(0.05)
    os.write(1, f"\x1b[33m[WARN] Node with rank {i} exited with code {r.returncode} \x1b[0m\n".encode())
interrupted.wait(2)
'''


@pytest.mark.parametrize("where", ["processes", "hostfile"])
async def test_stop_reaches_every_rank(where, tiny_model, pairs_file, tmp_path, hf_home, monkeypatch):
    use_stand_in_launcher(tmp_path, monkeypatch, STOP_LAUNCHER.replace("PYTHON", sys.executable))
    app = MlxDpoApp(model=tiny_model, data=pairs_file, runs_root=str(tmp_path / "runs"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        pane.query_one("#train-output", Input).value = str(tmp_path / "runs" / "s")
        if where == "processes":
            pane.query_one("#train-processes", Input).value = "2"
        else:
            two = [{"ssh": "mac1.local", "ips": ["10.0.0.1"]}, {"ssh": "mac2.local", "ips": ["10.0.0.2"]}]
            pane.query_one("#train-hostfile", Input).value = hosts(tmp_path, "hosts.json", two)
        await pilot.click("#train-start")
        try:
            # Both stand-in ranks have their SIGINT handler in place (they say so after installing it).
            ready = {"rank 0: training", "rank 1: training"}
            await wait_for(pilot, lambda: ready <= {line.strip() for line in pane.process.tail}, timeout=20)
            await pilot.click("#train-stop")
            await wait_for(pilot, lambda: not app.training_running, timeout=20)
        finally:
            if pane.process.running:  # a failed stop: leave no stand-ins behind
                os.killpg(pane.process.proc.pid, signal.SIGKILL)
        log = list(pane.process.tail)
        how = "got SIGINT" if where == "processes" else "got Ctrl-C"
        assert {f"rank 0: {how}", f"rank 1: {how}"} <= set(log), log
        assert "launcher: got SIGINT" in log  # so that it cannot SIGTERM a rank still writing its checkpoint
        if where == "hostfile":
            assert not any("rank" in line and "got SIGINT" in line for line in log)  # ssh clients left alone
            assert log.index("launcher: got SIGINT") > log.index("rank 0: got Ctrl-C")
        assert text_of(app, "#train-status") == "training stopped before its first checkpoint: nothing was saved"
