"""GGUF exports reproduce base + adapter in llama.cpp itself (llama-cpp-python): logits, tokens, stop tokens.

Tests marked `llama_cpp` skip when llama-cpp-python is not importable, except under
MLX_DPO_REQUIRE_LLAMA_CPP=1 (CI), where they fail: CI cannot pass by skipping them.
"""

from __future__ import annotations

import json
import os
import shutil

import mlx.core as mx
import numpy as np
import pytest

from mlx_dpo.cli import main
from mlx_dpo.config import TrainConfig
from mlx_dpo.data.template import render_text
from mlx_dpo.export.gguf import GGUF_TOLERANCE, tolerance
from mlx_dpo.model.generate import load_for_generation
from mlx_dpo.train.trainer import Trainer
from tiny_models import build_tiny_model

from conftest import synthetic_pairs, write_jsonl

gguf = pytest.importorskip("gguf")

PROMPTS = ["Please describe the sea.", "Tell me about a cat, briefly.", "Why is the sky blue?"]


def need_llama_cpp():
    try:
        import llama_cpp
    except ImportError as e:
        why = f"llama-cpp-python is not importable ({e}); pip install llama-cpp-python"
        if os.environ.get("MLX_DPO_REQUIRE_LLAMA_CPP") == "1":
            pytest.fail(f"MLX_DPO_REQUIRE_LLAMA_CPP=1 but {why}")
        pytest.skip(why)
    return llama_cpp


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(base folder, run dir, data file) for llama/qwen2 x float/4-bit bases, trained a few steps."""
    root = tmp_path_factory.mktemp("gguf")
    data = write_jsonl(root / "train.jsonl", synthetic_pairs(12, seed=7))
    out = {}
    for arch, bits in (("llama", None), ("llama", 4), ("qwen2", None), ("qwen2", 4)):
        name = f"{arch}-{bits or 'f32'}"
        base = build_tiny_model(root / f"m-{name}", arch=arch, quantize_bits=bits,
                                tie_word_embeddings=arch == "qwen2")
        run = root / f"run-{name}"
        cfg = TrainConfig(model=str(base), data=data, output=str(run), iters=4, batch_size=4, learning_rate=5e-3,
                          lr_schedule="constant", cache_dir=str(root / "cache")).validate()
        Trainer(cfg).setup().train()
        out[name] = (str(base), str(run), data)
    out["llama3-f32"] = (str(llama3_variant(out["llama-f32"][0], root / "m-llama3")), *out["llama-f32"][1:])
    return out


def llama3_variant(base, folder):
    """The tiny llama with Llama 3's pre-tokenizer (digits in threes) and Llama 3.1's RoPE frequency scaling
    (the original context chosen so that all three regimes of the scaling occur at head_dim 16)."""
    from mlx_dpo.export.gguf import _LLAMA3_SPLIT

    shutil.copytree(base, folder)
    tok = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    tok["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = _LLAMA3_SPLIT
    (folder / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 64}
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def export(base, run, out, gguf_type="f16", extra=()):
    assert main(["export", "--model", base, "--adapter", run, "--output", str(out), "--format", "gguf",
                 "--gguf-type", gguf_type, *extra]) == 0
    files = sorted(out.glob("*.gguf"))
    assert len(files) == 1 and files[0].name == f"{out.name}-{gguf_type}.gguf"
    return files[0]


def mlx_logits(base, run, ids):
    model, tok, switch = load_for_generation(base, run, log=lambda m: None)
    tuned = [np.array(model(mx.array([x]))[0].astype(mx.float32)) for x in ids]
    with switch.disabled():
        plain = [np.array(model(mx.array([x]))[0].astype(mx.float32)) for x in ids]
    return tuned, plain


def conversations(base):
    _, tok, _ = load_for_generation(base, None, log=lambda m: None)
    texts = [render_text(tok, [{"role": "user", "content": p}], None) for p in PROMPTS]
    texts += [render_text(tok, [{"role": "system", "content": "Be kind."}, {"role": "user", "content": p}],
                          [{"role": "assistant", "content": "Sure! It is lovely, 42 times."}]) for p in PROMPTS]
    return texts, tok


def llama_logits(llm, ids):
    llm.reset()
    llm.eval(ids)
    return [np.array(llm.scores[: len(ids)], dtype=np.float32)]


def max_diff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def load_gguf(path):
    llama_cpp = need_llama_cpp()
    return llama_cpp.Llama(model_path=str(path), logits_all=True, vocab_only=False, n_ctx=256, n_gpu_layers=0,
                           verbose=False, seed=0)


# ------------------------------------------------------------------ without llama.cpp

def test_gguf_file_holds_tokenizer_template_and_stop_tokens(trained, tmp_path, monkeypatch, capsys):
    """The file, the Modelfile and the README, read with gguf's own reader; llama.cpp's check said skipped."""
    import mlx_dpo.export.gguf_export as ge

    monkeypatch.setattr(ge, "llama_cpp_missing", lambda: "llama-cpp-python is not importable (test)")
    base, run, _ = trained["qwen2-f32"]
    path = export(base, run, tmp_path / "q")
    out = capsys.readouterr()
    assert "llama.cpp check skipped: llama-cpp-python is not importable (test)" in out.err
    assert "verification skipped" in out.out
    r = gguf.GGUFReader(str(path))
    f = {k: v.contents() for k, v in r.fields.items()}
    assert f["general.architecture"] == "qwen2" and f["tokenizer.ggml.model"] == "gpt2"
    assert f["tokenizer.ggml.pre"] == "qwen2"
    tok = json.loads(open(f"{base}/tokenizer.json", encoding="utf-8").read())
    assert f["tokenizer.ggml.tokens"][:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert len(f["tokenizer.ggml.merges"]) == len(tok["model"]["merges"]) > 0
    assert f["tokenizer.ggml.eos_token_id"] == 2 and "<|im_start|>" in f["tokenizer.chat_template"]
    names = {t.name for t in r.tensors}
    assert "token_embd.weight" in names and "blk.1.attn_q.bias" in names and "output.weight" not in names  # tied
    assert {t.tensor_type.name for t in r.tensors if len(t.shape) > 1} == {"F16"}
    modelfile = (tmp_path / "q" / "Modelfile").read_text()
    assert modelfile.startswith(f"FROM ./{path.name}\n")
    assert '<|im_start|>{{ .Role }}' in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and 'PARAMETER stop "<|endoftext|>"' in modelfile
    readme = (tmp_path / "q" / "README.md").read_text()
    assert "ollama create q-f16 -f Modelfile" in readme and f"llama-cli -m {path.name}" in readme
    assert "library_name: gguf" in readme


def test_llama3_variant_metadata(trained, tmp_path, monkeypatch):
    import mlx_dpo.export.gguf_export as ge

    monkeypatch.setattr(ge, "llama_cpp_missing", lambda: "test")
    base, run, _ = trained["llama3-f32"]
    r = gguf.GGUFReader(str(export(base, run, tmp_path / "l3")))
    assert r.fields["tokenizer.ggml.pre"].contents() == "llama-bpe"
    factors = next(t for t in r.tensors if t.name == "rope_freqs.weight").data
    assert len(factors) == 8 and factors[0] == 1.0 and factors[-1] == 8.0 and any(1 < f < 8 for f in factors)
    q = next(t for t in r.tensors if t.name == "blk.0.attn_q.weight")
    assert q.tensor_type.name == "F16"


def test_unsupported_architecture_is_refused_before_any_work(trained, tmp_path, capsys):
    base, run, _ = trained["llama-f32"]
    other = tmp_path / "gemma"
    shutil.copytree(base, other)
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(dict(cfg, model_type="gemma3")))
    assert main(["export", "--model", str(other), "--adapter", run, "--output", str(tmp_path / "g"),
                 "--format", "gguf"]) == 2
    err = capsys.readouterr().err
    assert "architecture 'gemma3' is not supported; supported: llama, mistral, qwen2" in err
    assert not (tmp_path / "g").exists() and not list(tmp_path.glob(".g*"))


def test_dtype_flag_is_refused_for_gguf(trained, tmp_path, capsys):
    base, run, _ = trained["llama-f32"]
    assert main(["export", "--model", base, "--adapter", run, "--output", str(tmp_path / "g"), "--format", "gguf",
                 "--dtype", "float16"]) == 2
    assert "--gguf-type" in capsys.readouterr().err


# ------------------------------------------------------------------ in llama.cpp

@pytest.mark.llama_cpp
@pytest.mark.parametrize("name,gguf_type", [("llama-f32", "f16"), ("llama-4", "f16"), ("qwen2-f32", "f16"),
                                            ("qwen2-4", "f16"), ("llama-f32", "bf16"), ("qwen2-4", "bf16"),
                                            ("llama3-f32", "f16")])
def test_gguf_matches_mlx_in_llama_cpp(trained, tmp_path, name, gguf_type, capsys):
    need_llama_cpp()
    base, run, _ = trained[name]
    path = export(base, run, tmp_path / "g", gguf_type)
    assert "verified: max |logit difference|" in capsys.readouterr().out
    texts, tok = conversations(base)
    llm = load_gguf(path)
    for text in texts:  # llama.cpp tokenizes our rendered conversations exactly as we do
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == tok.encode(text, add_special_tokens=False)
    ids = [tok.encode(t, add_special_tokens=False) for t in texts]
    tuned, plain = mlx_logits(base, run, ids)
    got = [llama_logits(llm, x)[0] for x in ids]
    diff, effect = max_diff(got, tuned), max_diff(tuned, plain)
    print(f"{name} {gguf_type}: max |llama.cpp - mlx| {diff:.4g}, adapter effect {effect:.4g}")
    assert diff <= tolerance(gguf_type, tuned)
    assert effect > 10 * diff  # the adapter's effect is far above the export's noise
    assert gguf_type != "f16" or effect > 10 * tolerance("f16", tuned)


@pytest.mark.llama_cpp
@pytest.mark.parametrize("name", ["llama-f32", "qwen2-4"])
def test_q8_0_reports_its_drift(trained, tmp_path, name, capsys):
    need_llama_cpp()
    base, run, _ = trained[name]
    export(base, run, tmp_path / "g", "q8_0")
    err = capsys.readouterr().err
    assert "quantized: drift reported, not enforced" in err and "q8_0 moved logits by up to" in err


@pytest.mark.llama_cpp
def test_four_bit_base_keeps_the_dpo_update(trained, tmp_path):
    """mlx issue #887: a fused 4-bit base must not round the update away. The export differs from an
    export of the bare base (the same adapter with B = 0) by far more than the f16 tolerance."""
    need_llama_cpp()
    base, run, _ = trained["llama-4"]
    bare = tmp_path / "bare-run"
    shutil.copytree(run, bare)
    weights = mx.load(str(bare / "adapters.safetensors"))
    mx.save_safetensors(str(bare / "adapters.safetensors"),
                        {k: mx.zeros_like(v) if k.endswith("lora_b") else v for k, v in weights.items()})
    tuned_path = export(base, run, tmp_path / "tuned")
    bare_path = export(base, str(bare), tmp_path / "bare")
    texts, tok = conversations(base)
    ids = [tok.encode(t, add_special_tokens=False) for t in texts[:2]]
    a, b = load_gguf(tuned_path), load_gguf(bare_path)
    got = max_diff([llama_logits(a, x)[0] for x in ids], [llama_logits(b, x)[0] for x in ids])
    _, plain = mlx_logits(base, run, ids)
    assert max_diff([llama_logits(b, x)[0] for x in ids], plain) <= GGUF_TOLERANCE["f16"]
    assert got > 10 * GGUF_TOLERANCE["f16"]


@pytest.mark.llama_cpp
@pytest.mark.parametrize("name", ["llama-f32", "qwen2-f32"])
def test_stop_token_ends_generation_in_llama_cpp(trained, tmp_path, name):
    llama_cpp = need_llama_cpp()
    base, run, _ = trained[name]
    path = export(base, run, tmp_path / "g")
    texts, tok = conversations(base)
    llm = load_gguf(path)
    for stop in (2, 0):  # <|im_end|> (eos) and <|endoftext|> (generation_config's second stop id)
        steps = []

        def force(input_ids, scores, stop=stop):  # the third generated token is the stop token
            steps.append(len(input_ids))
            if len(steps) == 3:
                scores = np.full_like(scores, -1e9)
                scores[stop] = 0.0
            return scores

        res = llm.create_completion(tok.encode(texts[0], add_special_tokens=False), max_tokens=20, temperature=0.0,
                                    logits_processor=llama_cpp.LogitsProcessorList([force]))
        assert res["choices"][0]["finish_reason"] == "stop", res
        assert res["usage"]["completion_tokens"] <= 3


def test_failed_llama_cpp_check_writes_nothing(trained, tmp_path, monkeypatch, capsys):
    """Only a passing export becomes OUT: a logit or tokenizer mismatch in llama.cpp leaves nothing behind."""
    import mlx_dpo.export.gguf_export as ge
    from mlx_dpo.export.gguf import GgufCheck

    monkeypatch.setattr(ge, "llama_cpp_missing", lambda: None)
    monkeypatch.setattr(ge, "check_in_llama_cpp", lambda *a, **k: GgufCheck(
        0.5, False, "", True, ["tokenization differs at token 3"]))
    base, run, _ = trained["llama-f32"]
    rc = main(["export", "--model", base, "--adapter", run, "--output", str(tmp_path / "g"), "--format", "gguf"])
    err = capsys.readouterr().err
    assert rc != 0 and "verification in llama.cpp failed" in err
    assert "exceeds the f16 tolerance" in err and "tokenization differs at token 3" in err
    assert not (tmp_path / "g").exists() and not list(tmp_path.glob(".g*"))
