"""GGUF export for llama.cpp, Ollama and LM Studio: the fused (dequantized) hf export, converted with the
llama.cpp project's own `gguf` library, then verified in llama.cpp itself (llama-cpp-python) when installed.

Why the `gguf` package and not `convert_hf_to_gguf.py`: the converter is a script, not an importable API;
it ships only inside llama.cpp's source tree (or llama-cpp-python's sdist), needs torch, and changes its
command line and model registry often. `gguf` is a small pure-Python wheel from the same project with the
format writer (`GGUFWriter`), the tensor-name maps (`TensorNameMap`, `MODEL_ARCH`), the quantizers
(`gguf.quants`: BF16, Q8_0) and the vocabulary helpers (`SpecialVocab`). What this package
adds is what the converter does per architecture, for the families we support: the hyper-parameter keys and
tensor conventions (export/gguf_arch.py: Llama's q/k permutation, Gemma's norm +1, Phi-3's fused tensors,
RoPE factors) and the vocabulary (export/gguf_vocab.py: byte-level BPE or SentencePiece-style). Nothing of
the binary format is hand-written, and every export is checked against MLX in llama.cpp itself, so a
mistake here cannot pass silently.

Tensors are streamed: tensor infos are declared first, then each tensor is read, converted and written
alone, so a 7B model never holds a second full copy in memory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UsageError
from .gguf_arch import (Family, family_for, generated_tensors, llama_cpp_name, rope_dims, rope_plan,
                        transform)
from .gguf_vocab import _LLAMA3_SPLIT, VocabPlan, add_vocab, vocab_plan  # noqa: F401 (tests use _LLAMA3_SPLIT)

GGUF_TYPES = ("f16", "bf16", "q8_0", "q4_k_m", "q5_k_m", "q6_k", "q4_0")
# Which dtype the fused hf model is written in before conversion (None: the base's own dtype). The k-quants
# (export/gguf_quant.py) are llama.cpp's quantizer applied to the verified f16 file.
HF_DTYPE = {"f16": "float16", "bf16": "bfloat16", "q8_0": None,
            "q4_k_m": "float16", "q5_k_m": "float16", "q6_k": "float16", "q4_0": "float16"}
# Largest |logit difference| accepted between llama.cpp and MLX (base + adapter), per GGUF type, for logits
# up to 1 in size; scaled by the largest |logit| above that (`tolerance`), and by the family's own factor
# (Gemma: llama.cpp's CPU GELU reads an f16 lookup table, a third rounding). llama.cpp's CPU matmuls round
# the activations to the weights' type too (f16: 11-bit mantissa, bf16: 8-bit), so the bound covers both
# roundings. Measured on the tiny test models (max |logit| ~0.6-1.3): f16 0.0006-0.02 (Gemma up to 0.032),
# bf16 0.006-0.086, and q8_0 0.007-0.20 (a quantization: its drift is reported, not enforced); float32
# tensors give 8e-5-8e-4 (Gemma 2: 0.013, the GELU table).
GGUF_TOLERANCE = {"f16": 2e-2, "bf16": 2.5e-1, "q8_0": None}


def tolerance(gguf_type: str, tuned: list[np.ndarray], family_scale: float = 1.0) -> float | None:
    base = GGUF_TOLERANCE.get(gguf_type)
    if base is None:
        return None
    return base * family_scale * max(1.0, max(float(np.abs(t).max()) for t in tuned))

_VERIFY_HINT = ("pip install llama-cpp-python, or the mlx-dpo[gguf-verify] extra (it builds llama.cpp from source; "
                "on a Mac with Metal)")


@dataclass
class GgufPlan:
    """What the pre-flight check found: everything the conversion needs, decided before any work."""
    family: Family
    vocab: VocabPlan
    rope: dict = field(default_factory=dict)

    @property
    def arch(self) -> str:
        return self.family.arch


def _templated(base_path: Path) -> bool:
    if (base_path / "chat_template.jinja").exists() or (base_path / "chat_template.json").exists():
        return True
    path = base_path / "tokenizer_config.json"
    return path.exists() and bool(json.loads(path.read_text(encoding="utf-8")).get("chat_template"))


def preflight(base_path: Path, config: dict, gguf_type: str) -> GgufPlan:
    """Refuse, before any work, what we cannot convert; name what we can."""
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise UsageError("--format gguf needs the `gguf` package (pip install gguf)") from None
    if gguf_type not in GGUF_TYPES:
        raise UsageError(f"--gguf-type: expected one of {', '.join(GGUF_TYPES)}, got {gguf_type!r}")
    fam = family_for(config)
    return GgufPlan(fam, vocab_plan(base_path, _templated(base_path)), rope_plan(config, fam))


# ---------------------------------------------------------------- tensors

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
    """The tensor's data as GGUFWriter.write_tensor_data takes it (float array, or quantized bytes)."""
    import gguf

    if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
        return data.astype(np.float32 if qtype == gguf.GGMLQuantizationType.F32 else np.float16)
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
        self.generated = generated_tensors(config, plan.rope)
        self.order = [(name, None) for name in self.generated]  # (gguf name, hf name or None: generated)
        for k in sorted(self.where, key=_natural):
            if k.endswith("rotary_emb.inv_freq") or k in plan.family.drop:
                continue
            name = self.names.get_name(k, try_suffixes=(".weight", ".bias"))
            if name is None:
                raise UsageError(f"--format gguf: no llama.cpp name for tensor {k!r} ({plan.arch})")
            self.order.append((name, k))

    def load(self, gguf_name: str, key: str | None) -> np.ndarray:
        if key is None:
            return self.generated[gguf_name]
        import mlx.core as mx

        # mx.load reads every dtype the export holds (bfloat16 included, which numpy cannot) and is lazy:
        # a tensor is read when evaluated, and dropped here once converted.
        f = self.where[key]
        if f not in self.lazy:
            self.lazy[f] = mx.load(str(f))
        data = np.array(self.lazy[f].pop(key).astype(mx.float32))
        return transform(self.plan.family, self.config, key, data)

    def shape(self, gguf_name: str, key: str | None) -> tuple:
        if key is None:
            return self.generated[gguf_name].shape
        from safetensors import safe_open

        with safe_open(str(self.where[key]), framework="numpy") as s:
            return tuple(s.get_slice(key).get_shape())


def _natural(s: str):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s)]


def _add_hparams(w, config: dict, plan: GgufPlan) -> None:
    """The keys every family shares (as convert_hf_to_gguf's TextModel writes them), then the family's own."""
    import gguf

    n_head = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    w.add_context_length(config.get("max_position_embeddings", 4096))
    w.add_embedding_length(config["hidden_size"])
    w.add_block_count(config["num_hidden_layers"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(config.get("num_key_value_heads") or n_head)
    w.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    w.add_rope_freq_base(config.get("rope_theta", 10000.0))
    w.add_rope_dimension_count(rope_dims(config))
    if head_dim != config["hidden_size"] // n_head:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    if plan.rope.get("kind") == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(plan.rope["factor"])
    if plan.family.extra is not None:
        plan.family.extra(w, config)


def _special_rstrip(folder: Path) -> bool:
    tok = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    return any(t.get("rstrip") for t in tok.get("added_tokens", []))


def write_gguf(hf_dir: Path, out_file: Path, plan: GgufPlan, gguf_type: str, name: str,
               stop_ids: list[int]) -> dict:
    """Convert the fused hf export in `hf_dir` into one GGUF file; returns a summary (tensor counts by type)."""
    import gguf

    config = json.loads((hf_dir / "config.json").read_text())
    tensors = _Tensors(hf_dir, config, plan)
    arch = getattr(gguf.MODEL_ARCH, plan.arch)
    w = gguf.GGUFWriter(str(out_file), gguf.MODEL_ARCH_NAMES[arch])
    w.add_name(llama_cpp_name(plan.family, name, _special_rstrip(hf_dir)))
    w.add_type(gguf.GGUFType.MODEL)
    _add_hparams(w, config, plan)
    embed = next((n, k) for n, k in tensors.order if n == "token_embd.weight")
    n_vocab = tensors.shape(*embed)[0]
    w.add_vocab_size(n_vocab)
    w.add_file_type({"f16": gguf.LlamaFileType.MOSTLY_F16, "bf16": gguf.LlamaFileType.MOSTLY_BF16,
                     "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[gguf_type])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_vocab(w, plan.vocab, hf_dir, n_vocab, stop_ids)

    counts: dict[str, int] = {}
    plan_types = []
    for gname, key in tensors.order:
        shape = tensors.shape(gname, key)
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


def load_llama(path: Path, n_ctx: int, lora_path: Path | None = None):
    import llama_cpp

    return llama_cpp.Llama(model_path=str(path), logits_all=True, vocab_only=False, n_ctx=n_ctx,
                           n_gpu_layers=0, verbose=False, seed=0,
                           **({"lora_path": str(lora_path)} if lora_path else {}))


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
                       tokenizer, prompt_messages: list[list[dict]], stop_ids: list[int],
                       lora_path: Path | None = None) -> GgufCheck:
    """Load the GGUF in llama.cpp; compare logits, tokenization, template rendering and stop tokens."""
    n_ctx = max([len(x) for x in inputs] + [len(tokenizer.encode(t)) for t, _ in texts] + [64]) + 16
    llm = load_llama(path, n_ctx, lora_path)
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
