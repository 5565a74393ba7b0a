"""GGUF export for llama.cpp, Ollama and LM Studio: the fused (dequantized) hf export, converted with the
llama.cpp project's own `gguf` library, then verified in llama.cpp itself (llama-cpp-python) when installed.

Why the `gguf` package and not `convert_hf_to_gguf.py`: the converter is a script, not an importable API;
it ships only inside llama.cpp's source tree (or llama-cpp-python's sdist), needs torch, and changes its
command line and model registry often. `gguf` is a small pure-Python wheel from the same project with the
format writer (`GGUFWriter`), the tensor-name maps (`TensorNameMap`, `MODEL_ARCH`), the quantizers
(`gguf.quants`: BF16, Q8_0) and the vocabulary helpers (`SpecialVocab`). What this module
adds is what the converter does per architecture, for the few we support: the hyper-parameter keys,
Llama's q/k row permutation (llama.cpp's Llama RoPE rotates adjacent pairs; HF rotates halves), Llama 3's
RoPE frequency factors, and the tokenizer's pre-tokenizer type. Nothing of the binary format is hand-written,
and every export is checked against MLX in llama.cpp itself, so a mistake here cannot pass silently.

Tensors are streamed: tensor infos are declared first, then each tensor is read, converted and written
alone, so a 7B model never holds a second full copy in memory.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UsageError

GGUF_TYPES = ("f16", "bf16", "q8_0")
# Which dtype the fused hf model is written in before conversion (None: the base's own dtype).
HF_DTYPE = {"f16": "float16", "bf16": "bfloat16", "q8_0": None}
# Largest |logit difference| accepted between llama.cpp and MLX (base + adapter), per GGUF type, for logits
# up to 1 in size; scaled by the largest |logit| above that (`tolerance`). llama.cpp's CPU matmuls round
# the activations to the weights' type too (f16: 11-bit mantissa, bf16: 8-bit), so the bound covers both
# roundings. Measured on the tiny test models (max |logit| ~0.6): f16 0.0009-0.006, bf16 0.006-0.086, and
# q8_0 0.007-0.20 (a quantization: its drift is reported, not enforced); float32 tensors give 8e-5-8e-4.
GGUF_TOLERANCE = {"f16": 2e-2, "bf16": 2.5e-1, "q8_0": None}


def tolerance(gguf_type: str, tuned: list[np.ndarray]) -> float | None:
    base = GGUF_TOLERANCE[gguf_type]
    if base is None:
        return None
    return base * max(1.0, max(float(np.abs(t).max()) for t in tuned))

# model_type -> (gguf architecture name, permute q/k for llama.cpp's Llama RoPE layout)
ARCHITECTURES = {"llama": ("LLAMA", True), "mistral": ("LLAMA", True), "qwen2": ("QWEN2", False)}

# Split regexes of byte-level BPE pre-tokenizers -> llama.cpp's `tokenizer.ggml.pre` names.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
PRE_TOKENIZERS = {_LLAMA3_SPLIT: "llama-bpe", _QWEN2_SPLIT: "qwen2"}

# Tokens llama.cpp itself treats as end-of-generation by their text (besides eos/eot/eom ids; llama-vocab.cpp).
LLAMA_CPP_EOG_TEXTS = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>",
                       "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>"}
_VERIFY_HINT = ("pip install llama-cpp-python, or the mlx-dpo[gguf-verify] extra (it builds llama.cpp from source; "
                "on a Mac with Metal)")


@dataclass
class GgufPlan:
    """What the pre-flight check found: everything the conversion needs, decided before any work."""
    arch: str                       # gguf.MODEL_ARCH member name
    permute: bool
    tokenizer_model: str            # "gpt2": byte-level BPE (the only kind supported so far)
    pre: str                        # tokenizer.ggml.pre: llama.cpp's pre-tokenizer name
    rope: dict = field(default_factory=dict)


def supported_list() -> str:
    return ", ".join(sorted(ARCHITECTURES))


def _pre_tokenizer(tok: dict) -> str | None:
    """llama.cpp's pre-tokenizer name for a byte-level BPE tokenizer.json, or None when unknown."""
    pre = tok.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    splits = [p.get("pattern", {}).get("Regex") for p in parts if p.get("type") == "Split"]
    if not splits:
        if any(p.get("type") == "ByteLevel" and p.get("use_regex", True) for p in parts):
            return "gpt-2"
        return None
    return PRE_TOKENIZERS.get(splits[0]) if len(splits) == 1 else None


def _rope(config: dict) -> dict:
    scaling = config.get("rope_scaling") or {}
    kind = (scaling.get("rope_type") or scaling.get("type") or "none").lower()
    if kind in ("none", "default"):
        return {}
    if kind in ("llama3", "linear"):
        return dict(scaling, kind=kind)
    raise UsageError(f"--format gguf: rope scaling {kind!r} is not supported yet (supported: none, linear, llama3)")


def preflight(base_path: Path, config: dict, gguf_type: str) -> GgufPlan:
    """Refuse, before any work, what we cannot convert; name what we can."""
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise UsageError("--format gguf needs the `gguf` package (pip install gguf)") from None
    if gguf_type not in GGUF_TYPES:
        raise UsageError(f"--gguf-type: expected one of {', '.join(GGUF_TYPES)}, got {gguf_type!r}")
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise UsageError(f"--format gguf: architecture {model_type!r} is not supported; supported: "
                         f"{supported_list()} (export --format hf and convert it with llama.cpp's "
                         "convert_hf_to_gguf.py instead)")
    arch, permute = ARCHITECTURES[model_type]
    path = base_path / "tokenizer.json"
    if not path.exists():
        raise UsageError(f"--format gguf: {base_path} has no tokenizer.json (a fast tokenizer file is needed "
                         "for the GGUF vocabulary)")
    tok = json.loads(path.read_text(encoding="utf-8"))
    model = tok.get("model", {})
    if model.get("type") != "BPE":
        raise UsageError(f"--format gguf: tokenizer model {model.get('type')!r} is not supported (BPE only)")
    if model.get("byte_fallback"):
        # SentencePiece-style vocabularies (Llama 2, Mistral v0.1-v0.3) need the real piece scores from
        # tokenizer.model (the sentencepiece package); gguf's LlamaHfVocab fills placeholder scores that
        # would make llama.cpp tokenize differently. Refused rather than exported wrong.
        raise UsageError("--format gguf: SentencePiece-style (byte-fallback) tokenizers are not supported yet; "
                         "byte-level BPE tokenizers are (Llama 3.x, Qwen2/2.5). Export --format hf and convert "
                         "it with llama.cpp's convert_hf_to_gguf.py instead")
    pre = _pre_tokenizer(tok)
    if pre is None:
        raise UsageError("--format gguf: the tokenizer's pre-tokenizer is not one llama.cpp is known to "
                         f"reproduce (known: {', '.join(sorted(set(PRE_TOKENIZERS.values()) | {'gpt-2'}))})")
    return GgufPlan(arch, permute, "gpt2", pre, _rope(config))


# ---------------------------------------------------------------- vocabulary

def _bpe_vocab(base: Path, n_vocab: int):
    """(tokens, token types) in id order, padded to the embedding's rows, as convert_hf_to_gguf does."""
    import gguf

    tok = json.loads((base / "tokenizer.json").read_text(encoding="utf-8"))
    by_id: dict[int, tuple[str, int]] = {i: (t, gguf.TokenType.NORMAL) for t, i in tok["model"]["vocab"].items()}
    for added in tok.get("added_tokens", []):
        kind = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
        by_id[added["id"]] = (added["content"], kind)
    if max(by_id) >= n_vocab:
        raise UsageError(f"tokenizer has id {max(by_id)} but the embedding has only {n_vocab} rows")
    tokens, types = [], []
    for i in range(n_vocab):
        text, kind = by_id.get(i, (f"[PAD{i}]", gguf.TokenType.UNUSED))
        tokens.append(text)
        types.append(kind)
    return tokens, types


def _add_vocab(w, plan: GgufPlan, folder: Path, n_vocab: int, stop_ids: list[int]) -> None:
    import gguf

    w.add_tokenizer_model(plan.tokenizer_model)
    w.add_tokenizer_pre(plan.pre)
    tokens, types = _bpe_vocab(folder, n_vocab)
    w.add_token_list(tokens)
    w.add_token_types(types)
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=n_vocab)
    special.add_to_gguf(w, quiet=True)
    eos = special.special_token_ids.get("eos")
    extra = [i for i in stop_ids if i != eos]
    if eos is None and stop_ids:
        w.add_eos_token_id(stop_ids[0])
        extra = stop_ids[1:]
    # llama.cpp stops on eos, eot, eom and on the end-of-turn tokens it knows by their text; a further stop
    # token of ours that it would not know becomes the eot token (the check in llama.cpp confirms all).
    unknown = [i for i in extra if i < len(tokens) and tokens[i] not in LLAMA_CPP_EOG_TEXTS]
    if unknown:
        w.add_eot_token_id(unknown[0])


# ---------------------------------------------------------------- tensors

def _permute(x: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotate-half q/k rows -> llama.cpp's adjacent-pair layout (convert_hf_to_gguf's LlamaModel.permute)."""
    return x.reshape(n_head, 2, x.shape[0] // n_head // 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)


def _llama3_rope_factors(config: dict, scaling: dict) -> np.ndarray:
    base = config.get("rope_theta", 10000.0)
    dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    factor = scaling.get("factor", 8.0)
    low, high = scaling.get("low_freq_factor", 1.0), scaling.get("high_freq_factor", 4.0)
    old = scaling.get("original_max_position_embeddings", 8192)
    low_wl, high_wl = old / low, old / high
    out = []
    for f in freqs:
        wl = 2 * math.pi / f
        if wl < high_wl:
            out.append(1.0)
        elif wl > low_wl:
            out.append(factor)
        else:
            smooth = (old / wl - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def _qtype(gguf_type: str, shape: tuple):
    import gguf

    Q = gguf.GGMLQuantizationType
    if len(shape) <= 1:
        return Q.F32  # norms, biases, RoPE factors stay float32, as in convert_hf_to_gguf
    if gguf_type == "q8_0":
        block = gguf.GGML_QUANT_SIZES[Q.Q8_0][0]
        return Q.Q8_0 if shape[-1] % block == 0 else Q.F16
    return {"f16": Q.F16, "bf16": Q.BF16}[gguf_type]


def _encode(data: np.ndarray, qtype):
    """(bytes-or-float array, shape for add_tensor_info, numpy dtype) for one tensor."""
    import gguf

    if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
        arr = data.astype(np.float32 if qtype == gguf.GGMLQuantizationType.F32 else np.float16)
        return arr
    return gguf.quants.quantize(data.astype(np.float32), qtype)


class _Tensors:
    """The fused safetensors, read one tensor at a time (numpy, float32), renamed and reshaped for llama.cpp."""

    def __init__(self, folder: Path, config: dict, plan: GgufPlan):
        import gguf
        from safetensors import safe_open

        self.files = sorted(folder.glob("model*.safetensors"))
        self.config, self.plan = config, plan
        self.names = gguf.TensorNameMap(getattr(gguf.MODEL_ARCH, plan.arch), config["num_hidden_layers"])
        self.where, self.lazy = {}, {}
        for f in self.files:
            with safe_open(str(f), framework="numpy") as s:
                for k in s.keys():
                    self.where[k] = f
        self.order = []  # (gguf name, hf name or None for generated tensors)
        if plan.rope.get("kind") == "llama3":
            self.order.append(("rope_freqs.weight", None))
        for k in sorted(self.where, key=_natural):
            if k.endswith("rotary_emb.inv_freq"):
                continue
            name = self.names.get_name(k, try_suffixes=(".weight", ".bias"))
            if name is None:
                raise UsageError(f"--format gguf: no llama.cpp name for tensor {k!r} ({plan.arch})")
            self.order.append((name, k))

    def load(self, gguf_name: str, key: str | None) -> np.ndarray:
        if key is None:
            return _llama3_rope_factors(self.config, self.plan.rope)
        import mlx.core as mx

        # mx.load reads every dtype the export holds (bfloat16 included, which numpy cannot) and is lazy:
        # a tensor is read when evaluated, and dropped here once converted.
        f = self.where[key]
        if f not in self.lazy:
            self.lazy[f] = mx.load(str(f))
        data = np.array(self.lazy[f].pop(key).astype(mx.float32))
        if self.plan.permute:
            c = self.config
            if key.endswith(("q_proj.weight", "q_proj.bias")):
                data = _permute(data, c["num_attention_heads"])
            elif key.endswith(("k_proj.weight", "k_proj.bias")):
                data = _permute(data, c.get("num_key_value_heads") or c["num_attention_heads"])
        return data

    def shape(self, key: str | None) -> tuple:
        if key is None:
            return (len(_llama3_rope_factors(self.config, self.plan.rope)),)
        from safetensors import safe_open

        with safe_open(str(self.where[key]), framework="numpy") as s:
            return tuple(s.get_slice(key).get_shape())


def _natural(s: str):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s)]


def write_gguf(hf_dir: Path, out_file: Path, plan: GgufPlan, gguf_type: str, name: str,
               stop_ids: list[int]) -> dict:
    """Convert the fused hf export in `hf_dir` into one GGUF file; returns a summary (tensor counts by type)."""
    import gguf

    config = json.loads((hf_dir / "config.json").read_text())
    tensors = _Tensors(hf_dir, config, plan)
    arch = getattr(gguf.MODEL_ARCH, plan.arch)
    w = gguf.GGUFWriter(str(out_file), gguf.MODEL_ARCH_NAMES[arch])
    n_head = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    w.add_name(name)
    w.add_type(gguf.GGUFType.MODEL)
    w.add_context_length(config.get("max_position_embeddings", 4096))
    w.add_embedding_length(config["hidden_size"])
    w.add_block_count(config["num_hidden_layers"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(config.get("num_key_value_heads") or n_head)
    w.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    w.add_rope_freq_base(config.get("rope_theta", 10000.0))
    w.add_rope_dimension_count(head_dim)
    if head_dim != config["hidden_size"] // n_head:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    if plan.rope.get("kind") == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(plan.rope["factor"])
    embed = next(k for n, k in tensors.order if n == "token_embd.weight")
    n_vocab = tensors.shape(embed)[0]
    w.add_vocab_size(n_vocab)
    w.add_file_type({"f16": gguf.LlamaFileType.MOSTLY_F16, "bf16": gguf.LlamaFileType.MOSTLY_BF16,
                     "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[gguf_type])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_vocab(w, plan, hf_dir, n_vocab, stop_ids)

    counts: dict[str, int] = {}
    plan_types = []
    for gname, key in tensors.order:
        shape = tensors.shape(key)
        qtype = _qtype(gguf_type, shape)
        plan_types.append(qtype)
        counts[qtype.name] = counts.get(qtype.name, 0) + 1
        if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            dt = np.dtype(np.float32 if qtype == gguf.GGMLQuantizationType.F32 else np.float16)
            w.add_tensor_info(gname, shape, dt, int(np.prod(shape)) * dt.itemsize)
        else:
            byte_shape = gguf.quants.quant_shape_to_byte_shape(shape, qtype)
            w.add_tensor_info(gname, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for (gname, key), qtype in zip(tensors.order, plan_types):
        w.write_tensor_data(_encode(tensors.load(gname, key), qtype))
    w.close()
    return counts


# ---------------------------------------------------------------- Modelfile and README

def _render_chatml(messages, generation):
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if generation else "")


def _render_llama3(messages, generation, bos="<|begin_of_text|>"):
    text = bos + "".join(f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content']}<|eot_id|>"
                         for m in messages)
    return text + ("<|start_header_id|>assistant<|end_header_id|>\n\n" if generation else "")


# Ollama (Go template) forms of the chat templates we can recognise, with a Python renderer of the same.
OLLAMA_TEMPLATES = {
    "chatml": ('{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}'
               '<|im_start|>assistant\n', _render_chatml),
    "llama3": ('{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}'
               '<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n', _render_llama3),
}
_PROBE = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
          {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Name a colour."}]


def ollama_template(tokenizer) -> str | None:
    """The Go template equivalent to the model's chat template (probed by rendering), or None."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    try:
        ours = tokenizer.apply_chat_template(_PROBE, add_generation_prompt=True, tokenize=False)
    except Exception:
        return None
    for go, render in OLLAMA_TEMPLATES.values():
        if ours == render(_PROBE, True) or (ours == render(_PROBE, True)[len("<|begin_of_text|>"):]
                                           if render is _render_llama3 else False):
            return go
    return None


def modelfile(gguf_name: str, tokenizer, stop_texts: list[str]) -> str:
    lines = [f"FROM ./{gguf_name}", ""]
    go = ollama_template(tokenizer)
    if go:
        lines += [f'TEMPLATE """{go}"""', ""]
    else:
        lines += ["# No TEMPLATE: Ollama uses the chat template stored in the GGUF (tokenizer.chat_template).", ""]
    lines += [f'PARAMETER stop "{t}"' for t in stop_texts]
    return "\n".join(lines) + "\n"


def run_readme(gguf_name: str, gguf_type: str, verdict: str) -> str:
    stem = Path(gguf_name).stem
    return "\n".join([
        "", "## Run it", "",
        f"`{gguf_name}` ({gguf_type}) holds the fused model, its tokenizer, chat template and stop tokens "
        f"({verdict}).", "",
        "- Ollama: `ollama create " + stem + " -f Modelfile`, then `ollama run " + stem + "`",
        f"- llama.cpp: `llama-cli -m {gguf_name} -cnv` (chat, using the stored template), or "
        f"`llama-server -m {gguf_name}`",
        f"- LM Studio: import `{gguf_name}` (`lms import {gguf_name}`)", ""])


# ---------------------------------------------------------------- verification in llama.cpp

def readable_check(path: Path, counts: dict) -> None:
    """Without llama.cpp too: the file reads back with gguf's own reader, with every tensor declared."""
    import gguf

    from ..errors import TrainingStopped

    reader = gguf.GGUFReader(str(path))
    if len(reader.tensors) != sum(counts.values()) or "tokenizer.ggml.tokens" not in reader.fields:
        raise TrainingStopped(f"gguf export: {path.name} does not read back ({len(reader.tensors)} tensors)")


def llama_cpp_missing() -> str | None:
    """Why llama.cpp verification cannot run here, or None when it can."""
    try:
        import llama_cpp  # noqa: F401
    except Exception as e:
        return f"llama-cpp-python is not importable ({type(e).__name__}: {e}); {_VERIFY_HINT}"
    return None


@dataclass
class GgufCheck:
    max_abs_diff: float
    tokens_equal: bool
    template_note: str
    stop_ok: bool
    details: list[str] = field(default_factory=list)


def load_llama(path: Path, n_ctx: int):
    import llama_cpp

    return llama_cpp.Llama(model_path=str(path), logits_all=True, vocab_only=False, n_ctx=n_ctx,
                           n_gpu_layers=0, verbose=False, seed=0)


def llama_logits(llm, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def is_eog(llm, token: int) -> bool:
    import llama_cpp

    model = llm._model
    vocab = getattr(model, "vocab", None)
    if vocab is not None and hasattr(llama_cpp, "llama_vocab_is_eog"):
        return bool(llama_cpp.llama_vocab_is_eog(vocab, token))
    return bool(llama_cpp.llama_token_is_eog(model.model, token))


def check_in_llama_cpp(path: Path, inputs: list[list[int]], tuned: list[np.ndarray], texts: list[tuple[str, bool]],
                       tokenizer, prompt_messages: list[list[dict]], stop_ids: list[int]) -> GgufCheck:
    """Load the GGUF in llama.cpp; compare logits, tokenization, template rendering and stop tokens."""
    n_ctx = max([len(x) for x in inputs] + [len(tokenizer.encode(t)) for t, _ in texts] + [64]) + 16
    llm = load_llama(path, n_ctx)
    try:
        diff = max(float(np.abs(llama_logits(llm, ids) - t).max()) for ids, t in zip(inputs, tuned))
        details, equal = [], True
        for text, special in texts:
            ours = list(tokenizer.encode(text, add_special_tokens=special))
            theirs = llm.tokenize(text.encode("utf-8"), add_bos=special, special=True)
            if ours != theirs:
                equal = False
                at = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
                details.append(f"tokenization differs at token {at}: ours {ours[at:at + 5]} vs llama.cpp "
                               f"{theirs[at:at + 5]} in {text[:60]!r}")
        note = _template_check(llm, tokenizer, prompt_messages)
        bad_stops = [i for i in stop_ids if not is_eog(llm, i)]
        if bad_stops:
            details.append(f"llama.cpp does not stop on token(s) {bad_stops}")
        return GgufCheck(diff, equal, note, not bad_stops, details)
    finally:
        llm.close() if hasattr(llm, "close") else None


def _template_check(llm, tokenizer, prompt_messages) -> str:
    """Render the stored chat template with llama-cpp-python's Jinja formatter and compare with ours."""
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return "no chat template stored"
    try:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from ..data.template import chat_prompt_text

        eos = llm.metadata.get("tokenizer.ggml.eos_token_id")
        bos = llm.metadata.get("tokenizer.ggml.bos_token_id")
        fmt = Jinja2ChatFormatter(template=template,
                                  eos_token=llm.detokenize([int(eos)], special=True).decode() if eos else "",
                                  bos_token=llm.detokenize([int(bos)], special=True).decode() if bos else "")
        for messages in prompt_messages:
            theirs = fmt(messages=messages).prompt
            ours = chat_prompt_text(tokenizer, messages)
            if theirs != ours:
                return f"chat template renders differently in llama-cpp-python ({theirs[:40]!r} vs {ours[:40]!r})"
        return "chat template renders the same in llama-cpp-python"
    except Exception as e:
        return f"chat template not compared in llama-cpp-python ({type(e).__name__})"
