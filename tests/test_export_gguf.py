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
from mlx_dpo.export.gguf_arch import FAMILIES
from mlx_dpo.model.generate import load_for_generation
from mlx_dpo.train.trainer import Trainer
import real_material
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
        # The padded layout (tokens_per_batch=0): the f16 tolerances below were calibrated on these adapters.
        # A packed-trained one is the same run up to rounding (losses within 4e-5), but Adam turns rounding in
        # near-zero gradients into ~lr-sized weight differences, and on the random 4-bit qwen2 one of those
        # adapters puts a few positions 0.02-0.05 off in llama.cpp's f16 run (median 3e-4, like this one's).
        cfg = TrainConfig(model=str(base), data=data, output=str(run), iters=4, batch_size=4, learning_rate=5e-3,
                          lr_schedule="constant", cache_dir=str(root / "cache"), tokens_per_batch=0).validate()
        Trainer(cfg).setup().train()
        out[name] = (str(base), str(run), data)
    out["llama3-f32"] = (str(llama3_variant(out["llama-f32"][0], root / "m-llama3")), *out["llama-f32"][1:])
    return out


def train(base, run, data, root):
    cfg = TrainConfig(model=str(base), data=data, output=str(run), iters=4, batch_size=4, learning_rate=5e-3,
                      lr_schedule="constant", cache_dir=str(root / "cache")).validate()
    Trainer(cfg).setup().train()
    return str(base), str(run), data


# Gemma 3's sliding window made shorter than the test conversations (~45 tokens), on one of its two layers,
# so that llama.cpp's window is exercised, not just declared.
GEMMA3_SWA = {"sliding_window": 8, "sliding_window_pattern": 2}


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """Tiny Mistral, Qwen3, Gemma 2, Gemma 3 (text) and Phi-3 models with the small trained BPE tokenizer, trained a
    few steps: the architectures' tensors and hyper-parameters, apart from the SentencePiece vocabularies."""
    root = tmp_path_factory.mktemp("gguf-families")
    data = write_jsonl(root / "train.jsonl", synthetic_pairs(12, seed=7))
    out = {}
    for arch in ARCHS_NEW:
        base = build_tiny_model(root / f"m-{arch}", arch=arch, tie_word_embeddings=arch.startswith("gemma"),
                                config_overrides=GEMMA3_SWA if arch == "gemma3_text" else None)
        out[arch] = train(base, root / f"run-{arch}", data, root)
    return out


# Phi-3/3.5's own tokenizer.json strips the whitespace after these special tokens (rstrip), which llama.cpp
# reproduces for models named Phi-3; the vendored GGUF vocabulary has lost the flag, so the stand-in gets it back.
PHI3_RSTRIP = {"</s>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>"}


def _phi3_rstrip(folder):
    for name, key in (("tokenizer.json", None), ("tokenizer_config.json", "added_tokens_decoder")):
        path = folder / name
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["added_tokens"] if key is None else data.get(key, {}).values()
        for t in entries:
            t["rstrip"] = t["content"] in PHI3_RSTRIP or t["content"].startswith("<|placeholder")
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def real_vocab_model(family, arch, path, **kw):
    """A tiny `arch` model carrying family `family`'s real tokenizer and template (tests/real_material.py)."""
    src, meta = real_material.tokenizer_dir(family), real_material._meta(family)
    vocab = -(-meta["vocab_size"] // 64) * 64
    path = build_tiny_model(path, arch=arch, vocab_size=vocab, tie_word_embeddings=True, corpus=["a b"],
                            hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64, **kw)
    for f in real_material.TOKENIZER_FILES:
        (path / f).unlink(missing_ok=True)
        if (src / f).exists():
            shutil.copy(src / f, path / f)
    if arch == "phi3":
        _phi3_rstrip(path)
    stop = meta["stop_ids"]
    ids = {"bos_token_id": meta["bos_id"]}
    for name, update in (("config.json", dict(ids, eos_token_id=stop[0] if len(stop) == 1 else stop)),
                         ("generation_config.json", dict(ids, eos_token_id=stop, pad_token_id=meta["pad_id"]))):
        cfg = json.loads((path / name).read_text())
        cfg.update(update)
        (path / name).write_text(json.dumps(cfg, indent=2))
    return path


@pytest.fixture(scope="module")
def spm(tmp_path_factory):
    """SentencePiece-style vocabularies, real (llama.cpp's ggml-vocab-llama-spm / -phi-3): a tiny Mistral with
    Mistral Nemo's template (Metaspace pre-tokenizer) and a tiny Phi-3 with Phi-3.5's (Prepend normalizer)."""
    try:
        real_material.material_dir()
    except real_material.Unavailable as e:
        pytest.skip(f"real vocabularies unavailable (the package index cannot be reached): {e}")
    root = tmp_path_factory.mktemp("gguf-spm")
    data = write_jsonl(root / "train.jsonl", synthetic_pairs(12, seed=7))
    return {f"{arch}-real": train(real_vocab_model(family, arch, root / f"m-{arch}"), root / f"run-{arch}", data, root)
            for family, arch in (("mistral-nemo", "mistral"), ("phi-3.5", "phi3"))}


def lookup(request, name):
    """(base, run, data) of model `name`, building only the fixture that holds it."""
    fixture = "spm" if name.endswith("-real") else "families" if name in ARCHS_NEW else "trained"
    return request.getfixturevalue(fixture)[name]


ARCHS_NEW = ("mistral", "qwen3", "gemma2", "gemma3_text", "phi3")


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
    assert "architecture 'gemma3' (a multimodal Gemma 3 checkpoint" in err
    assert ("supported: Llama (2, 3.x) (llama), Mistral (mistral), Qwen2/2.5 (qwen2), Qwen3 (qwen3), "
            "Gemma 2 (gemma2), Gemma 3 (text) (gemma3_text), Phi-3/3.5 (phi3)") in err
    assert not (tmp_path / "g").exists() and not list(tmp_path.glob(".g*"))


def fields(path):
    r = gguf.GGUFReader(str(path))
    return {k: v.contents() for k, v in r.fields.items()}, {t.name: t for t in r.tensors}


def test_family_metadata(families, tmp_path, monkeypatch):
    """What llama.cpp needs per family, read back without llama.cpp: Gemma's norm factor (HF stores w - 1; the
    tiny models' norm weights are 1, so llama.cpp's factor is 2), soft-capping, the sliding window and its layer
    pattern; Phi-3's fused q/k/v and gate/up; Mistral's permuted Llama layout."""
    import mlx_dpo.export.gguf_export as ge

    monkeypatch.setattr(ge, "llama_cpp_missing", lambda: "test")
    f, t = fields(export(*families["gemma2"][:2], tmp_path / "g2"))
    assert f["general.architecture"] == "gemma2" and f["gemma2.attn_logit_softcapping"] == 50.0
    assert f["gemma2.final_logit_softcapping"] == 30.0 and f["gemma2.attention.sliding_window"] == 4096
    assert np.all(t["output_norm.weight"].data == 2.0) and np.all(t["blk.0.post_ffw_norm.weight"].data == 2.0)
    assert "output.weight" not in t  # tied: llama.cpp reads token_embd twice
    f, t = fields(export(*families["gemma3_text"][:2], tmp_path / "g3"))
    assert f["gemma3.attention.sliding_window"] == 8 and f["gemma3.rope.freq_base_swa"] == 10000.0
    assert list(f["gemma3.attention.sliding_window_pattern"]) == [True, False]
    assert np.all(t["blk.1.attn_q_norm.weight"].data == 2.0)
    f, t = fields(export(*families["phi3"][:2], tmp_path / "p3"))
    assert "blk.0.attn_qkv.weight" in t and "blk.0.attn_q.weight" not in t
    assert tuple(t["blk.0.ffn_up.weight"].shape) == (64, 256)  # gate and up side by side (2 x 128)
    assert f["phi3.rope.scaling.original_context_length"] == 2048


def test_spm_vocab_metadata(spm, tmp_path, monkeypatch):
    """SentencePiece-style vocabularies: tokenizer model "llama", scores that order the merges, byte tokens,
    the space prefix chosen from the tokenizer's normalizer / pre-tokenizer, Phi-3's name for llama.cpp."""
    import mlx_dpo.export.gguf_export as ge

    monkeypatch.setattr(ge, "llama_cpp_missing", lambda: "test")
    f, _ = fields(export(*spm["mistral-real"][:2], tmp_path / "m"))
    assert f["tokenizer.ggml.model"] == "llama" and "tokenizer.ggml.merges" not in f
    tokens, scores, types = f["tokenizer.ggml.tokens"], f["tokenizer.ggml.scores"], f["tokenizer.ggml.token_type"]
    assert tokens[:3] == ["<unk>", "<s>", "</s>"] and tokens[3] == "<0x00>" and types[3] == gguf.TokenType.BYTE
    assert tokens[32000] == "[INST]" and types[32000] == gguf.TokenType.CONTROL
    assert scores[tokens.index("▁t")] > scores[tokens.index("▁the")]  # "▁t" is merged before "▁the"
    assert f["tokenizer.ggml.add_space_prefix"] is False  # Metaspace "first" + a template that starts with <s>
    f, _ = fields(export(*spm["phi3-real"][:2], tmp_path / "p"))
    assert f["tokenizer.ggml.add_space_prefix"] is True and f["general.name"] == "p (Phi-3)"


@pytest.mark.parametrize("normalizer,pre,templated,expected", [
    ({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                                          {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
     None, True, True),                                                    # Llama 2 / Mistral (legacy)
    ({"type": "Replace", "pattern": {"String": " "}, "content": "▁"}, None, True, False),  # Gemma
    (None, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}, True, False),
    (None, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}, False, True),
    (None, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}, True, None),
    ({"type": "Lowercase"}, None, True, None),
])
def test_space_prefix_follows_the_tokenizer(normalizer, pre, templated, expected):
    from mlx_dpo.export.gguf_vocab import _space_prefix

    assert _space_prefix({"normalizer": normalizer, "pre_tokenizer": pre}, templated) is expected


def test_gemma_query_scale_llama_cpp_would_not_use_is_refused():
    from mlx_dpo.errors import UsageError
    from mlx_dpo.export.gguf_arch import family_for

    cfg = {"model_type": "gemma2", "hidden_size": 64, "num_attention_heads": 4, "head_dim": 32,
           "num_hidden_layers": 2, "query_pre_attn_scalar": 16}
    with pytest.raises(UsageError, match="query_pre_attn_scalar 16 differs from the 32 llama.cpp assumes"):
        family_for(cfg)
    assert family_for(dict(cfg, query_pre_attn_scalar=32)).arch == "GEMMA2"


@pytest.mark.slow
@pytest.mark.llama_cpp
def test_gemma_real_vocabulary_tokenizes_alike_in_llama_cpp(tmp_path):
    """Gemma's 262k SentencePiece vocabulary (the vendored Gemma 4 one under Gemma 2/3's turn-token names),
    written as the export writes it, tokenizes chat renders as transformers does. Vocabulary only: a full round
    trip with this vocabulary measured f16 0.0082 (gemma2) and 0.0044 (gemma3_text) but takes minutes."""
    llama_cpp = need_llama_cpp()
    from transformers import AutoTokenizer

    from mlx_dpo.export.gguf_vocab import add_vocab, vocab_plan

    try:
        folder = real_material.tokenizer_dir("gemma-2")
    except real_material.Unavailable as e:
        pytest.skip(f"real vocabularies unavailable: {e}")
    tok = AutoTokenizer.from_pretrained(str(folder))
    plan = vocab_plan(folder, templated=True)
    assert (plan.model, plan.space_prefix) == ("llama", False)
    path = tmp_path / "vocab.gguf"
    w = gguf.GGUFWriter(str(path), "gemma2")
    for key, value in (("context_length", 256), ("embedding_length", 32), ("block_count", 1),
                       ("feed_forward_length", 64), ("head_count", 2), ("head_count_kv", 1),
                       ("layer_norm_rms_eps", 1e-6)):
        getattr(w, f"add_{key}")(value)
    add_vocab(w, plan, folder, len(tok), [tok.convert_tokens_to_ids("<end_of_turn>")])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    chat = [{"role": "user", "content": "Hello there, how are you?"},
            {"role": "assistant", "content": "Fine,  thanks!\n\nAnd  you? 42 times, ünïcödé 日本語 🙂"},
            {"role": "user", "content": "Why is the sky blue?"}]
    for text in (tok.apply_chat_template(chat, tokenize=False),
                 tok.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True)):
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == tok.encode(text, add_special_tokens=False)


def test_dtype_flag_is_refused_for_gguf(trained, tmp_path, capsys):
    base, run, _ = trained["llama-f32"]
    assert main(["export", "--model", base, "--adapter", run, "--output", str(tmp_path / "g"), "--format", "gguf",
                 "--dtype", "float16"]) == 2
    assert "--gguf-type" in capsys.readouterr().err


# ------------------------------------------------------------------ in llama.cpp

@pytest.mark.llama_cpp
@pytest.mark.parametrize("name,gguf_type", [("llama-f32", "f16"), ("llama-4", "f16"), ("qwen2-f32", "f16"),
                                            ("qwen2-4", "f16"), ("llama-f32", "bf16"), ("qwen2-4", "bf16"),
                                            ("llama3-f32", "f16"), ("mistral", "f16"), ("qwen3", "f16"), ("gemma2", "f16"),
                                            ("gemma3_text", "f16"), ("phi3", "f16"),
                                            ("mistral-real", "f16"), ("phi3-real", "f16")])
def test_gguf_matches_mlx_in_llama_cpp(request, tmp_path, name, gguf_type, capsys):
    need_llama_cpp()
    base, run, _ = lookup(request, name)
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
    scale = FAMILIES[json.loads(open(f"{base}/config.json").read())["model_type"]].tolerance_scale
    assert diff <= tolerance(gguf_type, tuned, scale)
    assert effect > 10 * diff  # the adapter's effect is far above the export's noise
    assert gguf_type != "f16" or effect > 10 * tolerance("f16", tuned, scale)


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
@pytest.mark.parametrize("name", ["llama-f32", "qwen2-f32", "gemma2", "phi3-real", "mistral-real"])
def test_stop_token_ends_generation_in_llama_cpp(request, tmp_path, name):
    llama_cpp = need_llama_cpp()
    base, run, _ = lookup(request, name)
    path = export(base, run, tmp_path / "g")
    texts, tok = conversations(base)
    llm = load_gguf(path)
    # tiny: <|im_end|>, <|endoftext|>; Gemma: <end_of_turn>; Phi-3.5: <|end|>, <|assistant|>, <|endoftext|>
    stops = json.loads(open(f"{base}/generation_config.json", encoding="utf-8").read())["eos_token_id"]
    for stop in stops:
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


# ------------------------------------------------------------------ k-quants (llama.cpp's quantizer)

@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A tiny llama whose rows are multiples of 256 (k-quant blocks: hidden 256, MLP 512, 2 layers, about 1.4M
    weights), trained a few steps: big enough for llama.cpp to k-quantize nearly every tensor."""
    root = tmp_path_factory.mktemp("gguf-wide")
    data = write_jsonl(root / "train.jsonl", synthetic_pairs(12, seed=7))
    base = build_tiny_model(root / "m", arch="llama", hidden_size=256, intermediate_size=512, num_heads=4,
                            num_kv_heads=2, num_layers=2)
    return train(base, root / "run", data, root)


def test_k_quant_without_llama_cpp_says_how_to_get_it_before_any_work(trained, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp raises ImportError
    base, run, _ = trained["llama-f32"]
    rc = main(["export", "--model", base, "--adapter", run, "--output", str(tmp_path / "g"), "--format", "gguf",
               "--gguf-type", "q4_k_m"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "pip install 'mlx-dpo[gguf-verify]'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "g").exists() and not list(tmp_path.glob(".g*"))


@pytest.mark.llama_cpp
def test_q4_k_m_is_smaller_loads_in_llama_cpp_and_reports_its_drift(wide, tmp_path, capsys):
    need_llama_cpp()
    base, run, _ = wide
    f16 = export(base, run, tmp_path / "f", "f16")
    q = export(base, run, tmp_path / "q", "q4_k_m")
    out = capsys.readouterr()
    assert "greedy next token agrees at" in out.err and "drift reported, not enforced" in out.out
    assert "relative" in out.err
    print(*[line for line in out.err.splitlines() if "q4_k_m" in line], sep="\n")
    assert not list((tmp_path / "q").glob("*.f16"))  # the intermediate f16 file is gone
    r = gguf.GGUFReader(str(q))
    kinds = {t.tensor_type.name for t in r.tensors if len(t.shape) > 1}
    assert "Q4_K" in kinds and "F16" not in kinds
    ratio = f16.stat().st_size / q.stat().st_size
    texts, tok = conversations(base)
    ids = [tok.encode(t, add_special_tokens=False) for t in texts]
    tuned, _ = mlx_logits(base, run, ids)
    llm = load_gguf(q)
    got = [llama_logits(llm, x)[0] for x in ids]
    agree = sum(int((g.argmax(-1) == t.argmax(-1)).sum()) for g, t in zip(got, tuned))
    total = sum(len(x) for x in ids)
    print(f"q4_k_m: {q.stat().st_size} bytes vs f16 {f16.stat().st_size} ({ratio:.2f}x smaller); greedy next token "
          f"agrees at {agree}/{total}; max |diff| {max_diff(got, tuned):.4g}")
    assert ratio >= 2.5
    assert agree / total >= 0.75  # measured 245/283 (87%) on this model; random tiny weights drift more than real ones


# ------------------------------------------------------------------ the adapter alone: gguf-lora

def test_dora_adapter_is_refused_for_gguf_lora_before_any_work(trained, tmp_path, capsys):
    base, run, _ = trained["llama-f32"]
    dora = tmp_path / "dora-run"
    shutil.copytree(run, dora)
    cfg = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps(dict(cfg, fine_tune_type="dora")))
    rc = main(["export", "--model", base, "--adapter", str(dora), "--output", str(tmp_path / "g"),
               "--format", "gguf-lora"])
    err = capsys.readouterr().err
    assert rc == 2 and "DoRA adapter has no llama.cpp LoRA form" in err
    assert not (tmp_path / "g").exists() and not list(tmp_path.glob(".g*"))


def test_lora_outside_the_blocks_is_refused_for_gguf_lora_before_any_work(trained, tmp_path, capsys):
    base, run, _ = trained["llama-f32"]
    head = tmp_path / "head-run"
    shutil.copytree(run, head)
    weights = dict(mx.load(str(head / "adapters.safetensors")))
    weights.update({"lm_head.lora_a": mx.zeros((64, 8)), "lm_head.lora_b": mx.zeros((8, 384))})
    mx.save_safetensors(str(head / "adapters.safetensors"), weights)
    rc = main(["export", "--model", base, "--adapter", str(head), "--output", str(tmp_path / "g"),
               "--format", "gguf-lora"])
    err = capsys.readouterr().err
    assert rc == 2 and "the LoRA on 'lm_head' (llama) is not converted" in err
    assert not (tmp_path / "g").exists()


def test_gguf_base_of_another_architecture_is_refused_before_any_work(trained, tmp_path, monkeypatch, capsys):
    import mlx_dpo.export.gguf_export as ge

    monkeypatch.setattr(ge, "llama_cpp_missing", lambda: "test")
    other = export(*trained["qwen2-f32"][:2], tmp_path / "q")
    base, run, _ = trained["llama-f32"]
    rc = main(["export", "--model", base, "--adapter", run, "--output", str(tmp_path / "g"), "--format", "gguf-lora",
               "--gguf-base", str(other)])
    err = capsys.readouterr().err
    assert rc == 2 and "a qwen2 model of 2 blocks, but the adapter's base is a llama model" in err
    assert not (tmp_path / "g").exists()


@pytest.mark.llama_cpp
@pytest.mark.parametrize("name", ["llama-f32", "qwen2-4", "mistral"])
def test_gguf_lora_reproduces_mlx_base_plus_adapter_in_llama_cpp(request, tmp_path, name, capsys):
    """The adapter GGUF in llama.cpp's LoRA layout, on the f16 base exported beside it: base + adapter match MLX
    to the f16 tolerance, the adapter's effect is far above it; then the same adapter on a named --gguf-base."""
    llama_cpp = need_llama_cpp()
    base, run, _ = lookup(request, name)
    out = tmp_path / "a"
    assert main(["export", "--model", base, "--adapter", run, "--output", str(out), "--format", "gguf-lora"]) == 0
    assert "verified: max |logit difference|" in capsys.readouterr().out
    adapter, base_gguf = out / "a-lora.gguf", out / "a-base-f16.gguf"
    assert sorted(p.name for p in out.iterdir()) == ["Modelfile", "README.md", base_gguf.name, adapter.name]
    modelfile = (out / "Modelfile").read_text()
    assert modelfile.startswith(f"FROM ./{base_gguf.name}\nADAPTER ./{adapter.name}\n")
    f, t = fields(adapter)
    lp = json.loads(open(f"{run}/adapter_config.json").read())["lora_parameters"]
    assert f["general.type"] == "adapter" and f["adapter.type"] == "lora"
    assert f["adapter.lora.alpha"] == pytest.approx(lp["scale"] * lp["rank"])
    assert f["general.architecture"] == ("qwen2" if name.startswith("qwen2") else "llama")  # Mistral: llama
    hidden = json.loads(open(f"{base}/config.json").read())["hidden_size"]
    a, b = t["blk.0.attn_q.weight.lora_a"], t["blk.0.attn_q.weight.lora_b"]
    assert tuple(a.shape) == (hidden, lp["rank"]) and tuple(b.shape) == (lp["rank"], hidden)  # ggml (ne0, ne1)
    assert all(n.endswith((".lora_a", ".lora_b")) for n in t)

    texts, tok = conversations(base)
    ids = [tok.encode(x, add_special_tokens=False) for x in texts[:3]]
    tuned, plain = mlx_logits(base, run, ids)
    llm = llama_cpp.Llama(model_path=str(base_gguf), lora_path=str(adapter), logits_all=True, n_ctx=256,
                          n_gpu_layers=0, verbose=False, seed=0)
    diff = max_diff([llama_logits(llm, x)[0] for x in ids], tuned)
    effect = max_diff(tuned, plain)
    print(f"{name} gguf-lora: max |llama.cpp base + LoRA - mlx| {diff:.4g}, adapter effect {effect:.4g}")
    assert diff <= tolerance("f16", tuned) and effect > 10 * tolerance("f16", tuned)

    again = tmp_path / "b"
    assert main(["export", "--model", base, "--adapter", run, "--output", str(again), "--format", "gguf-lora",
                 "--gguf-base", str(base_gguf)]) == 0
    assert sorted(p.name for p in again.iterdir()) == ["Modelfile", "README.md", "b-lora.gguf"]
    assert (again / "Modelfile").read_text().startswith(f"FROM {base_gguf.resolve()}\nADAPTER ./b-lora.gguf\n")
