"""The Train tab's loss menu is the engine's registry: every loss, only the selected loss's settings, and
one line on when to use it; a combination from a config file is kept."""

from __future__ import annotations

import yaml
from textual.widgets import Input, Select

from mlx_dpo import LOSS_KINDS, LOSS_PARAMS, LOSSES
from tui.panes.train_pane import TrainPane

from test_tui import text_of, wait_for
from test_tui_keys import SIZE, make_app


def shown_settings(pane) -> set[str]:
    return {p.name for p in LOSS_PARAMS.values() if p.form and pane.query_one(f"#train-{p.name}").display}


async def test_the_loss_menu_shows_each_losss_own_settings_and_when_to_use_it(tmp_path, pairs_file):
    app = make_app("model", pairs_file, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        select = pane.query_one("#train-loss", Select)
        assert [value for _, value in select._options] == list(LOSSES) == list(LOSS_KINDS)
        assert shown_settings(pane) == {"beta", "label_smoothing", "rpo_alpha"}  # RPO: every paired loss takes it
        assert text_of(pane, "#train-loss-help") == LOSS_KINDS["sigmoid"].when

        select.value = "orpo"
        await wait_for(pilot, lambda: shown_settings(pane) - {"rpo_alpha"} == {"orpo_lambda"}, timeout=5)
        assert text_of(pane, "#train-loss-help") == LOSS_KINDS["orpo"].when
        pane.query_one("#train-orpo_lambda", Input).value = "0.3"
        pane.query_one("#train-beta", Input).value = "0.7"  # hidden: not ORPO's, so it is not passed
        flags = pane.form_flags()
        assert flags["loss"] == "orpo" and flags["orpo_lambda"] == 0.3 and "beta" not in flags

        select.value = "kto"
        await wait_for(pilot, lambda: shown_settings(pane) == {"beta", "desirable_weight", "undesirable_weight"},
                       timeout=5)


async def test_a_config_with_a_combined_loss_fills_the_form_with_it(tmp_path, pairs_file):
    app = make_app("model", pairs_file, tmp_path)
    config = tmp_path / "mpo.yaml"
    config.write_text(yaml.safe_dump({"loss": ["sigmoid", "bco_pair", "sft"], "loss_weights": [0.8, 0.2, 1.0],
                                      "discopop_tau": 0.1}))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        pane.load_config(str(config))
        await wait_for(pilot, lambda: pane.query_one("#train-loss", Select).value == "sigmoid,bco_pair,sft",
                       timeout=5)
        assert shown_settings(pane) == {"beta", "label_smoothing", "rpo_alpha"}
        args = pane.args_for(pane.form_flags())
        assert args[:2] == ["--config", str(config)] and "sigmoid,bco_pair,sft" in args
