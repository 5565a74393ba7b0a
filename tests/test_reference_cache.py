"""The reference cache is reused for identical inputs and invalidated by any change that matters."""

from __future__ import annotations

import json
import shutil

import numpy as np

from mlx_dpo.config import TrainConfig
from mlx_dpo.train.events import Reporter
from mlx_dpo.train.trainer import Trainer

from conftest import synthetic_pairs, write_jsonl


def setup_logs(model, data, out, **kw) -> tuple[list[str], Trainer]:
    logs: list[str] = []
    cfg = TrainConfig(model=model, data=data, output=str(out), iters=1, batch_size=4, **kw).validate()
    tr = Trainer(cfg, Reporter(logs.append)).setup()
    return [m for m in logs if m.startswith("reference")], tr


def test_second_run_reuses_cache(tiny_model, pairs_file, tmp_path):
    first, tr1 = setup_logs(tiny_model, pairs_file, tmp_path / "a")
    second, tr2 = setup_logs(tiny_model, pairs_file, tmp_path / "b")
    assert "computed" in first[0] and "reused from cache" in second[0]
    np.testing.assert_array_equal(tr1.session.ref_train["chosen"], tr2.session.ref_train["chosen"])
    # And the cached values are the model's own log-probs at step 0 (policy == reference).
    assert np.all(tr1.session.ref_train["chosen"] < 0) and np.all(tr1.session.ref_train["ntok_chosen"] > 0)


def test_changes_invalidate_cache(tiny_model, pairs_file, tmp_path):
    setup_logs(tiny_model, pairs_file, tmp_path / "a")
    # Length limits that change the rendered rows.
    logs, _ = setup_logs(tiny_model, pairs_file, tmp_path / "b", max_length=12, max_prompt_length=6)
    assert "computed" in logs[0]
    # Different data.
    other = write_jsonl(tmp_path / "other.jsonl", synthetic_pairs(16, seed=99))
    logs, _ = setup_logs(tiny_model, other, tmp_path / "c")
    assert "computed" in logs[0]
    # On-the-fly quantization.
    logs, _ = setup_logs(tiny_model, pairs_file, tmp_path / "d", quantize=8)
    assert "computed" in logs[0]
    # Same data, same model: reused.
    logs, _ = setup_logs(tiny_model, pairs_file, tmp_path / "e")
    assert "reused" in logs[0]


def test_changed_weights_or_template_invalidate(tiny_model, pairs_file, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    _, tr = setup_logs(str(model), pairs_file, tmp_path / "a")
    # Same size, different bytes: a fine-tuned copy of the weights.
    import mlx.core as mx
    w = mx.load(str(model / "model.safetensors"))
    w["model.norm.weight"] = w["model.norm.weight"] * 1.5
    mx.save_safetensors(str(model / "model.safetensors"), w)
    logs, tr2 = setup_logs(str(model), pairs_file, tmp_path / "b")
    assert "computed" in logs[0]
    assert not np.allclose(tr.session.ref_train["chosen"], tr2.session.ref_train["chosen"])
    # A tokenizer/template change that keeps the token ids identical still invalidates.
    cfg_path = model / "tokenizer_config.json"
    tc = json.loads(cfg_path.read_text())
    tc["chat_template"] = tc["chat_template"] + "{# harmless comment #}"
    cfg_path.write_text(json.dumps(tc))
    logs, _ = setup_logs(str(model), pairs_file, tmp_path / "c")
    assert "computed" in logs[0]


def test_init_adapter_changes_reference(tiny_model, pairs_file, tmp_path):
    cfg = TrainConfig(model=tiny_model, data=pairs_file, output=str(tmp_path / "first"), iters=3, batch_size=4,
                      learning_rate=1e-3).validate()
    Trainer(cfg).setup().train()
    base_logs, base = setup_logs(tiny_model, pairs_file, tmp_path / "x")
    logs, tr = setup_logs(tiny_model, pairs_file, tmp_path / "y", init_adapter=str(tmp_path / "first"))
    assert "computed" in logs[0]
    assert not np.allclose(base.session.ref_train["chosen"], tr.session.ref_train["chosen"])


def test_corrupt_cache_entry_is_recomputed(tiny_model, pairs_file, tmp_path, monkeypatch):
    import os
    from pathlib import Path
    _, tr = setup_logs(tiny_model, pairs_file, tmp_path / "a")
    entries = list((Path(os.environ["MLX_DPO_CACHE"]) / "reference").glob("*.safetensors"))
    assert len(entries) == 1
    entries[0].write_bytes(b"garbage")
    logs, tr2 = setup_logs(tiny_model, pairs_file, tmp_path / "b")
    assert "computed" in logs[0]
    np.testing.assert_allclose(tr.session.ref_train["chosen"], tr2.session.ref_train["chosen"], atol=1e-5)


def test_chat_template_kwargs_are_part_of_the_reference_key(tiny_model, pairs_file, tmp_path):
    # The tiny template ignores the variable, so the token ids are the same: only the key tells them apart.
    first, tr1 = setup_logs(tiny_model, pairs_file, tmp_path / "a", chat_template_kwargs='{"unused": 1}')
    again, _ = setup_logs(tiny_model, pairs_file, tmp_path / "b", chat_template_kwargs='{"unused": 1}')
    other, tr2 = setup_logs(tiny_model, pairs_file, tmp_path / "c", chat_template_kwargs='{"unused": 2}')
    assert "computed" in first[0] and "reused" in again[0] and "computed" in other[0]
    assert [p.chosen.tolist() for p in tr1.session.train_pairs] == [p.chosen.tolist() for p in tr2.session.train_pairs]
