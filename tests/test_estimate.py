"""`mlx-dpo estimate` and the trainer's memory check: the estimate on the data's own token lengths, the budget
(--memory, $MLX_DPO_MEMORY_BUDGET), settings that fit when a run does not, and `train` refusing such a run
before the weights load unless --force."""

from __future__ import annotations

import json

import pytest
import yaml

from mlx_dpo.cli import main
from mlx_dpo.model.memory import GB


def estimate_json(capsys, *args) -> dict:
    assert main(["estimate", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def trainer_worst_row(model, data, batch_size=4, tokens_per_batch=1024, epochs=4) -> int:
    """The longest micro-batch (positions of a packed row) the trainer's own batching makes of this data."""
    from mlx_dpo.config import TrainConfig
    from mlx_dpo.data.prepare import prepare_strict
    from mlx_dpo.model.load import load_tokenizer_only
    from mlx_dpo.train.batching import epoch_order
    from mlx_dpo.train.layout import packed

    cfg = TrainConfig(model=model, data=data, batch_size=batch_size, tokens_per_batch=tokens_per_batch)
    pairs = prepare_strict(cfg.data_source(), cfg.data_keys, load_tokenizer_only(model), cfg.max_length,
                           cfg.prompt_limit, lambda *_: None).pairs
    layout = packed(tokens_per_batch, share_prompt=True)
    return max(part.n_positions for epoch in range(epochs)
               for batch in epoch_order(pairs, batch_size, cfg.seed, epoch, layout.sort_key)
               for part in layout.parts(pairs, batch, batch_size, cfg.pad_multiple))


def test_estimate_reads_the_datas_lengths_and_its_worst_micro_batch_is_the_trainers(tiny_model, pairs_file,
                                                                                   capsys):
    out = estimate_json(capsys, "--model", tiny_model, "--data", pairs_file, "--batch-size", 4, "--memory", "16GB")
    assert out["peak_gb"] > 0 and out["pairs"] == 16
    assert out["batch"]["source"] == "data" and out["batch"]["packed"]
    assert out["batch"]["tokens"] == trainer_worst_row(tiny_model, pairs_file)
    assert out["available_source"] == "a 16 GB Mac" and out["available_bytes"] == 14 * GB
    assert out["fits"] is True and out["suggestions"] == []
    # The human report names the terms, the peak, where the lengths came from and the verdict.
    assert main(["estimate", "--model", tiny_model, "--data", pairs_file, "--memory", "16"]) == 0
    text = capsys.readouterr().out
    for needed in ("weights", "activations", "LM head", "peak", "the data's token lengths: 16 pairs",
                   "budget: 14.0 GB (a 16 GB Mac)", "fits: yes", "on a Mac's GPU"):
        assert needed in text, needed


def test_without_data_it_estimates_the_worst_case_at_max_length_and_says_so(tiny_model, capsys):
    out = estimate_json(capsys, "--model", tiny_model, "--max-length", 256)
    assert out["batch"]["source"] == "max_length"
    longer = estimate_json(capsys, "--model", tiny_model, "--max-length", 1024)
    assert longer["peak_bytes"] > out["peak_bytes"]
    assert main(["estimate", "--model", tiny_model, "--max-length", "256"]) == 0
    assert "every pair at --max-length 256 (no --data)" in capsys.readouterr().out


def test_a_run_too_big_for_the_mac_gets_suggestions_that_each_fit(tiny_model, pairs_file, capsys):
    # Padded batches: the reference pass then runs the same batches (packed, it fills rows from all pairs).
    base = ["--model", tiny_model, "--data", pairs_file, "--batch-size", 4, "--tokens-per-batch", 0]
    peak = estimate_json(capsys, *base, "--memory", "16")["peak_bytes"]
    ram = f"{(2 * GB + 0.8 * peak) / GB:.9f}"  # 2 GB for macOS, then 80% of what the run needs
    out = estimate_json(capsys, *base, "--memory", ram)
    assert out["fits"] is False and out["suggestions"]
    for s in out["suggestions"]:
        again = estimate_json(capsys, *base, *s["flags"], "--memory", ram)
        assert again["fits"] is True, s["flags"]
        assert again["peak_bytes"] == s["peak_bytes"]
    # A smaller batch keeps the pairs per optimizer step with --grad-accum.
    batch = [s["settings"] for s in out["suggestions"] if "batch_size" in s["settings"]]
    assert batch and all(b["batch_size"] * b["grad_accum"] == 4 for b in batch)
    assert main(["estimate", *map(str, base), "--memory", ram]) == 0  # a question: exit 0 either way
    text = capsys.readouterr().out
    assert "fits: NO" in text and "settings that fit (add these flags):" in text
    assert all(" ".join(s["flags"]) in text for s in out["suggestions"])


def test_a_shorter_max_length_suggestion_says_how_many_pairs_it_cuts(tiny_model, tmp_path, capsys):
    from conftest import write_jsonl

    long = " ".join(["word"] * 300)
    rows = [{"prompt": f"question {i}", "chosen": long if i % 2 else "Yes.", "rejected": "No."} for i in range(8)]
    data = write_jsonl(tmp_path / "long.jsonl", rows)
    base = ["--model", tiny_model, "--data", data, "--batch-size", 1, "--tokens-per-batch", 0]
    peak = estimate_json(capsys, *base, "--memory", "16")["peak_bytes"]
    out = estimate_json(capsys, *base, "--memory", f"{(2 * GB + 0.5 * peak) / GB:.9f}")
    shorter = [s for s in out["suggestions"] if "max_length" in s["settings"]]
    assert shorter, out["suggestions"]
    assert shorter[0]["truncated_pairs"] == 4  # the four long answers, not the short ones


def test_when_no_single_change_is_enough_a_combination_that_fits_is_offered(tiny_model, pairs_file):
    from mlx_dpo.config import TrainConfig
    from mlx_dpo.train.fit import check, data_lengths

    cfg = TrainConfig(model=tiny_model, data=pairs_file)
    data = data_lengths(cfg)
    singles = check(cfg, data, available=0.9 * check(cfg, data, available=16 * GB).estimate.peak).suggestions
    assert singles and all(len(set(s.changes) - {"grad_accum"}) == 1 for s in singles)
    budget, offers = min(s.estimate.peak for s in singles), singles
    while offers and all(len(set(s.changes) - {"grad_accum"}) == 1 for s in offers):
        budget *= 0.95  # down to where even the smallest value of each single setting is too much
        offers = check(cfg, data, available=budget).suggestions
    [combined] = offers
    assert len(set(combined.changes) - {"grad_accum"}) > 1 and combined.estimate.fits
    assert combined.estimate.peak <= budget


@pytest.mark.parametrize("memory", ["16X", "lots", "-4"])
def test_a_bad_memory_size_is_one_line_and_exit_2(tiny_model, capsys, memory):
    assert main(["estimate", "--model", tiny_model, f"--memory={memory}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--memory" in err and "Traceback" not in err


def test_estimate_of_a_missing_data_file_is_exit_2(tiny_model, tmp_path, capsys):
    assert main(["estimate", "--model", tiny_model, "--data", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err


def test_train_refuses_a_run_over_the_budget_before_the_weights_and_force_trains_it(tiny_model, pairs_file,
                                                                                   tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLX_DPO_MEMORY_BUDGET", "1MB")
    run = tmp_path / "run"
    args = ["train", "--model", tiny_model, "--data", pairs_file, "--output", str(run), "--iters", "1"]
    assert main(args + ["--events"]) == 2
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    error = events[-1]
    assert error["event"] == "error" and error["status"] == 2 and error["key"] == "force"
    assert "1.0 MB budget (MLX_DPO_MEMORY_BUDGET)" in error["text"] and "--force" in error["text"]
    memory = error["details"]["memory"]
    assert memory["fits"] is False and memory["batch"]["source"] == "data"
    # Refused after the data was read, before the weights: no "load" phase, nothing in the run dir.
    assert [e["phase"] for e in events if e["event"] == "phase"] == ["data"]
    assert not run.exists()
    assert main(args + ["--force"]) == 0
    assert "training anyway (--force)" in capsys.readouterr().err
    assert (run / "adapters.safetensors").exists()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["force"] is True
    # A resumed run keeps its --force (a setting a resume may change, so giving it or not is accepted).
    assert main(["train", "--output", str(run), "--resume", "--iters", "2"]) == 0


def test_train_names_the_settings_that_fit(tiny_model, pairs_file, tmp_path, capsys, monkeypatch):
    from mlx_dpo.config import TrainConfig
    from mlx_dpo.train.fit import check, data_lengths

    cfg = TrainConfig(model=tiny_model, data=pairs_file)
    peak = check(cfg, data_lengths(cfg), available=16 * GB).estimate.peak
    monkeypatch.setenv("MLX_DPO_MEMORY_BUDGET", str(int(0.8 * peak)))
    assert main(["train", "--model", tiny_model, "--data", pairs_file, "--output", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "settings that fit: --" in err and "(peak " in err
    assert err.count("\n") == 1 and not (tmp_path / "r").exists()


def test_a_bad_budget_variable_is_exit_2_naming_it(tiny_model, pairs_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLX_DPO_MEMORY_BUDGET", "plenty")
    assert main(["train", "--model", tiny_model, "--data", pairs_file, "--output", str(tmp_path / "r")]) == 2
    assert "MLX_DPO_MEMORY_BUDGET='plenty'" in capsys.readouterr().err


def test_an_unknown_budget_never_refuses(tiny_model, pairs_file, monkeypatch):
    import mlx_dpo.model.memory
    from mlx_dpo.config import TrainConfig
    from mlx_dpo.train.fit import check, data_lengths

    monkeypatch.setattr(mlx_dpo.model.memory, "machine_memory", lambda: None)
    cfg = TrainConfig(model=tiny_model, data=pairs_file)
    fit = check(cfg, data_lengths(cfg))
    assert fit.fits is None and fit.suggestions == [] and "budget unknown" in fit.verdict()


def test_iterate_passes_force_to_every_rounds_training():
    from mlx_dpo.cli.iterate import iterate_config
    from mlx_dpo.cli.parser import build_parser

    args = build_parser().parse_args(["iterate", "--prompts", "p.jsonl", "--judge", "human", "--output", "o",
                                      "--force"])
    assert iterate_config(args).train["force"] is True


def test_force_may_change_on_resume_and_survives_the_config_round_trip(tmp_path):
    from mlx_dpo.config import RESUME_MAY_CHANGE, TrainConfig, build_config, load_yaml, save_config

    assert "force" in RESUME_MAY_CHANGE
    save_config(TrainConfig(model="m", data="d", force=True), tmp_path / "config.yaml")
    assert build_config(load_yaml(tmp_path / "config.yaml"), {}).force is True


def test_a_size_reads_as_binary_units_and_a_plain_number_in_the_unit_given():
    from mlx_dpo.train.fit import parse_size

    assert parse_size("16GB", GB) == parse_size("16G", GB) == parse_size("16", GB) == parse_size("16 GiB", 1) == 16 * GB
    assert parse_size("512MB", GB) == GB / 2
    assert parse_size("1000", 1) == 1000
    assert parse_size("16X", GB) is None and parse_size("0", GB) is None and parse_size("", GB) is None
