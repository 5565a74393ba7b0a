"""Exports reproduce base + adapter in their real consumers: transformers, PEFT and mlx-lm."""

from __future__ import annotations

import json
import os

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from mlx_dpo.cli import main
from mlx_dpo.config import TrainConfig
from mlx_dpo.model.generate import load_for_generation
from tiny_models import build_tiny_model
from mlx_dpo.train.trainer import Trainer

from conftest import synthetic_pairs, write_jsonl

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

PROMPTS = ["Please describe the sea.", "Tell me about a cat, briefly.", "Why is the sky blue?"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(base folder, run dir) for llama/qwen2 x float/4-bit bases and a DoRA run, trained a few steps."""
    root = tmp_path_factory.mktemp("export")
    data = write_jsonl(root / "train.jsonl", synthetic_pairs(12, seed=7))
    out = {}
    for arch, bits, dora in (("llama", None, False), ("llama", 4, False), ("qwen2", None, False),
                             ("qwen2", 4, False), ("llama", None, True)):
        name = f"{arch}-{bits or 'f32'}{'-dora' if dora else ''}"
        base = build_tiny_model(root / f"m-{arch}-{bits}", arch=arch, quantize_bits=bits,
                                tie_word_embeddings=arch == "qwen2")
        run = root / f"run-{name}"
        cfg = TrainConfig(model=str(base), data=data, output=str(run), iters=4, batch_size=4, learning_rate=5e-3,
                          dora=dora, lr_schedule="constant",
                          cache_dir=str(root / "cache")).validate()
        Trainer(cfg).setup().train()
        out[name] = (str(base), str(run))
    return out


def mlx_tuned_logits(base, run, ids):
    model, _, switch = load_for_generation(base, run, log=lambda m: None)
    tuned = [np.array(model(mx.array([x]))[0]) for x in ids]
    with switch.disabled():
        plain = [np.array(model(mx.array([x]))[0]) for x in ids]
    return tuned, plain


def token_ids(base):
    tok = transformers.AutoTokenizer.from_pretrained(base)
    return [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
            for p in PROMPTS], tok


def encode(tok, texts):
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def torch_logits(model, ids):
    with torch.no_grad():
        return [model(torch.tensor([x])).logits[0].float().numpy() for x in ids]


def max_diff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


@pytest.mark.parametrize("name", ["llama-f32", "llama-4", "qwen2-f32", "qwen2-4", "llama-f32-dora"])
def test_hf_export_matches_in_transformers(trained, tmp_path, name):
    base, run = trained[name]
    out = tmp_path / "hf"
    assert main(["export", "--model", base, "--adapter", run, "--output", str(out), "--dtype", "float32"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert "quantization" not in config and "quantization_config" not in config
    for f in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "README.md"):
        assert (out / f).exists(), f
    card = (out / "README.md").read_text()
    assert base in card and "train.jsonl" in card and "beta" in card
    assert "adapter fused into its weights" in card and "A LORA adapter" not in card  # a whole model, not an adapter
    texts, tok = token_ids(str(out))
    ids = encode(tok, texts)
    tuned, plain = mlx_tuned_logits(base, run, ids)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    got = torch_logits(hf, ids)
    assert max_diff(got, tuned) <= 1e-3
    assert max_diff(tuned, plain) > 1e-2  # the adapter's effect is real, and it survived the export


@pytest.mark.parametrize("name", ["llama-f32", "qwen2-f32", "llama-f32-dora"])
def test_peft_export_matches_on_the_original_base(trained, tmp_path, name):
    base, run = trained[name]
    out = tmp_path / "peft"
    assert main(["export", "--model", base, "--adapter", run, "--output", str(out), "--format", "peft",
                 "--dtype", "float32"]) == 0
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 8 and cfg["lora_alpha"] == 160.0
    assert cfg["base_model_name_or_path"] == base and cfg["use_dora"] == name.endswith("dora")
    texts, tok = token_ids(base)
    ids = encode(tok, texts)
    tuned, plain = mlx_tuned_logits(base, run, ids)
    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = peft.PeftModel.from_pretrained(model, str(out))
    model.eval()
    got = torch_logits(model, ids)
    assert max_diff(got, tuned) <= 1e-3
    assert max_diff(tuned, plain) > 1e-2


def test_peft_refuses_an_mlx_quantized_base(trained, tmp_path, capsys):
    base, run = trained["llama-4"]
    assert main(["export", "--model", base, "--adapter", run, "--output", str(tmp_path / "p"),
                 "--format", "peft"]) == 2
    assert "PEFT cannot load an MLX-quantized checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_mlx_export_loads_in_mlx_lm(trained, tmp_path):
    from mlx_lm import load

    base, run = trained["qwen2-4"]
    out = tmp_path / "mlx"
    assert main(["export", "--model", base, "--adapter", run, "--output", str(out), "--format", "mlx"]) == 0
    model, tok = load(base, adapter_path=str(out))
    ids = [tok.encode(p) for p in PROMPTS]
    tuned, _ = mlx_tuned_logits(base, run, ids)
    assert max_diff([np.array(model(mx.array([x]))[0]) for x in ids], tuned) <= 1e-5


def test_requantized_hf_export_reports_drift(trained, tmp_path, capsys):
    from mlx_lm import load

    base, run = trained["llama-f32"]
    out = tmp_path / "q"
    assert main(["export", "--model", base, "--adapter", run, "--output", str(out), "--quantize", "4"]) == 0
    err = capsys.readouterr().err
    assert "re-quantized to 4 bits: logits moved by up to" in err
    assert "quantization" in json.loads((out / "config.json").read_text())
    model, _ = load(str(out))
    assert any(isinstance(m, nn.QuantizedLinear) for _, m in model.named_modules())


def test_export_target_that_exists_is_refused(trained, tmp_path, capsys):
    base, run = trained["llama-f32"]
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export", "--model", base, "--adapter", run, "--output", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine" and len(list(out.iterdir())) == 1


def test_failed_verification_leaves_nothing(trained, tmp_path, monkeypatch, capsys):
    import mlx_dpo.export.formats as export

    base, run = trained["llama-f32"]
    monkeypatch.setitem(export.TOLERANCE, "float16", 0.0)  # float16 rounding cannot pass a zero tolerance
    out = tmp_path / "out"
    assert main(["export", "--model", base, "--adapter", run, "--output", str(out), "--dtype", "float16"]) == 1
    assert "export verification failed" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither OUT nor its temporary folder


def test_push_to_hub_uploads_without_printing_the_token(trained, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, repo, **kw):
            calls.append(("create", repo))

        def upload_folder(self, folder_path, repo_id, **kw):
            calls.append(("upload", repo_id, sorted(os.listdir(folder_path))))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    base, run = trained["llama-f32"]
    assert main(["export", "--model", base, "--adapter", run, "--output", str(tmp_path / "o"), "--format", "mlx",
                 "--push-to-hub", "me/my-adapter"]) == 0
    assert calls[0] == ("create", "me/my-adapter") and "adapters.safetensors" in calls[1][2]
    out = capsys.readouterr()
    assert "hf_secret_token_value" not in out.out + out.err


def test_a_gguf_file_is_named_for_its_type_once():
    from pathlib import Path

    from mlx_dpo.export.gguf_export import gguf_file_name

    assert gguf_file_name(Path("runs/demo-gguf-f16"), "f16") == "demo-gguf-f16.gguf"  # the app's folder name
    assert gguf_file_name(Path("out/my model"), "q8_0") == "my-model-q8_0.gguf"
