"""Did it get better, in the app (issue 24): a run's compare results on the Runs tab, a ranking of the runs
compared against the base, and the blind compare a person does there (the engine thread answers, the
screen shows the two answers as 1 and 2, the verdicts go to RUN_DIR/compare-*.jsonl and nowhere else)."""

from __future__ import annotations

import json

from textual.widgets import DataTable, Static

from conftest import write_jsonl
from mlx_dpo import CompareConfig, prepare_comparison, read_compare
from mlx_dpo.compare import run as compare_run
from tui.app import MlxDpoApp
from tui.engine import Engine
from tui.help_screen import HelpScreen
from tui.screens.blind_compare import BlindCompare

from test_tui import wait_for
from test_tui_keys import SIZE, FakeEngine, notes

ADAPTER_CONFIG = {"fine_tune_type": "lora", "num_layers": 2, "lora_parameters": {"rank": 4, "scale": 20.0, "dropout": 0.0}}


def adapter_run(path, model: str, valid: str | None = None):
    """A finished run dir with an adapter (its weights are never loaded: the answers are canned)."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(f"model: {model}\niters: 3\nloss: sigmoid\nbeta: 0.1\n"
                                      + (f"valid_data: {valid}\n" if valid else ""))
    (path / "adapter_config.json").write_text(json.dumps(ADAPTER_CONFIG))
    (path / "adapters.safetensors").write_bytes(b"")
    (path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 0.7 - 0.1 * s}) + "\n" for s in (1, 2, 3)))
    return path


def canned(monkeypatch, a: list[str], b: list[str]):
    """Side A (the run's adapter) answers `a`, side B (the base) answers `b`, one answer per prompt."""
    def generate(side, prompts, cfg, report):
        texts = b if side.adapter is None else a
        return [[(t, len(t))] for t in texts[:len(prompts)]]

    monkeypatch.setattr(compare_run, "generate_answers", generate)


def prompts_file(tmp_path, n: int) -> str:
    return write_jsonl(tmp_path / "prompts.jsonl", [f"question {i}" for i in range(n)])


def judged(run, prompts: str, winner: str):
    """Record a comparison of `run` against the base with the engine's own writer: the answer starting with
    `winner` wins, identical answers tie."""
    comparison = prepare_comparison(CompareConfig(adapter=str(run), prompts=prompts, judge="human"))
    for duel in comparison.duels:
        comparison.record_pick(duel, "tie" if duel.identical else "a" if duel.first.startswith(winner) else "b")
    return comparison.result()


async def test_a_shown_run_has_its_compare_results_and_runs_compared_with_the_base_are_ranked(
        tiny_model, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    good, bad = adapter_run(runs / "good", tiny_model), adapter_run(runs / "bad", tiny_model)
    prompts = prompts_file(tmp_path, 4)
    canned(monkeypatch, ["run 1", "run 2", "run 3", "same"], ["base 1", "base 2", "base 3", "same"])
    judged(good, prompts, "run")   # 3 wins, 1 tie
    judged(bad, prompts, "base")   # 3 losses, 1 tie
    app = MlxDpoApp(model=tiny_model, runs_root=str(runs), engine=FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        pane = app.query_one("#pane-runs")
        ranking = pane.query_one("#runs-ranking", Static)
        assert ranking.display
        lines = str(ranking.render()).splitlines()
        assert "ranking against the base" in lines[0]
        assert [line.split(":")[0] for line in lines[1:]] == ["1. good", "2. base", "3. bad"]
        assert "3W 1T 0L" in lines[1] and "+0 Elo" in lines[2] and "0W 1T 3L" in lines[3]
        assert not pane.query_one("#runs-compare").display  # until a run is shown
        table = pane.query_one("#runs-table", DataTable)
        table.move_cursor(row=pane.paths.index(str(good)), animate=False)
        await pilot.press("enter")
        await pilot.pause(0.1)
        box = pane.query_one("#runs-compare", Static)
        text = str(box.render())
        assert box.display and "compared (good)" in text
        assert "vs the base: 3 wins · 1 ties · 0 losses of 4 — win rate 88%" in text
        r = read_compare(next(good.glob("compare-*.jsonl")))
        lo, hi = r["ci95"]
        assert f"(95% interval {lo:.0%}–{hi:.0%}), judge human" in text


async def test_one_run_compared_is_not_ranked_and_a_run_without_results_shows_none(tiny_model, tmp_path,
                                                                                    monkeypatch):
    runs = tmp_path / "runs"
    good, plain = adapter_run(runs / "good", tiny_model), adapter_run(runs / "plain", tiny_model)
    canned(monkeypatch, ["run 1", "run 2"], ["base 1", "base 2"])
    judged(good, prompts_file(tmp_path, 2), "run")
    app = MlxDpoApp(model=tiny_model, runs_root=str(runs), engine=FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        pane = app.query_one("#pane-runs")
        assert not pane.query_one("#runs-ranking").display
        pane.query_one("#runs-table", DataTable).move_cursor(row=pane.paths.index(str(plain)), animate=False)
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert not pane.query_one("#runs-compare").display


def snapshot_files(root) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def test_a_blind_compare_hides_the_sides_until_the_end_and_records_only_verdicts(
        tiny_model, pairs_file, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    prompts = prompts_file(tmp_path, 4)
    run = adapter_run(runs / "r1", tiny_model, valid=prompts)
    # Neutral answers: nothing in them says which side wrote them; the run's ("alpha") are the better ones.
    canned(monkeypatch, ["alpha 0", "alpha 1", "alpha 2", "same"], ["omega 0", "omega 1", "omega 2", "same"])
    app = MlxDpoApp(model=tiny_model, data=pairs_file, runs_root=str(runs), engine=Engine())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        assert "b compares it blind with the base" in str(app.query_one("#runs-help", Static).render())
        await pilot.press("question_mark")
        await pilot.pause(0.1)
        assert isinstance(app.screen, HelpScreen)
        assert any(key == "b" and "with the base's, blind" in what for _, key, what in app.screen.rows)
        await pilot.press("escape")
        await pilot.pause(0.1)
        before = snapshot_files(tmp_path)
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BlindCompare) and app.screen.comparison is not None,
                       timeout=60)
        screen = app.screen

        def shown(wid):
            return str(screen.query_one(wid, Static).render())

        firsts = []
        while not screen.done:
            first, second = shown("#blind-1"), shown("#blind-2")
            assert {first.split()[0], second.split()[0]} == {"alpha", "omega"}
            assert screen.query_one("#blind-1").border_title == "1" and screen.query_one("#blind-2").border_title == "2"
            for text in (shown("#blind-progress"), shown("#blind-prompt"), first, second):
                assert "base" not in text and "run" not in text.replace("prompt", "")  # no side named
            assert not screen.query_one("#blind-summary").display
            assert f"prompt {screen.position + 1} of 4" in shown("#blind-progress")
            firsts.append(first.split()[0])
            await pilot.press("1" if first.startswith("alpha") else "2")
            await pilot.pause(0.05)
        assert set(firsts) == {"alpha", "omega"}  # the sides were shuffled: the run's answer shown as 1 and as 2
        summary = shown("#blind-summary")
        assert screen.query_one("#blind-summary").display
        assert "Revealed — r1 against the base: 3 wins · 1 ties · 0 losses of 4 — win rate 88%" in summary
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, BlindCompare), timeout=10)
        assert "blind compare of r1: 3 wins" in notes(app)
    files = list(run.glob("compare-*.jsonl"))
    assert len(files) == 1
    r = read_compare(files[0])
    assert (r["wins"], r["ties"], r["losses"], r["n"], r["judge"]) == (3, 1, 0, 4, "human")
    after = snapshot_files(tmp_path)
    # Only the verdicts file is new; no training or preference file was written or changed.
    assert set(after) - set(before) == {str(files[0])}
    assert {k: v for k, v in after.items() if k in before} == before


async def test_a_blind_compare_without_held_out_prompts_says_how_to_get_them(tiny_model, tmp_path):
    runs = tmp_path / "runs"
    adapter_run(runs / "r1", tiny_model)
    app = MlxDpoApp(model=tiny_model, runs_root=str(runs), engine=FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4", "b")
        await pilot.pause(0.1)
        assert not isinstance(app.screen, BlindCompare)
        assert "no held-out prompts to compare on" in notes(app) and "Data tab" in notes(app)
