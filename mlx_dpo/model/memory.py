"""The memory a training run needs, from config.json and the data's token lengths (no MLX, nothing loaded).

The model of a DPO step's MLX peak (benchmarks/real_sizes.py measures it on Llama 3.2 1B/3B and 3.1 8B
shapes; BENCHMARKS.md "Real sizes" has the points and the error of this estimate at each):

    weights      the base as stored: 4/8-bit codes + a bf16 scale and bias per group of 64, or 2/4 bytes
                 per parameter for a float base
    adapter      LoRA (or DoRA) parameters in fp32, their gradients and AdamW's two moments
    blocks       what the backward keeps of the transformer blocks: per block and token a fixed set of
                 activations (inputs of every linear layer, the MLP's hidden states, norms), plus the
                 attention's (heads x T x T) scores and probabilities of each row of T tokens (the packed
                 row is one sequence of its pairs, so attention grows with the square of the row's length).
                 With --grad-checkpoint: each block's input, plus one block's activations recomputed.
    workspace    transients of one layer at a time: the dequantized fp32 weight of the largest linear
                 layer (CPU dequantize path only) and the backward's gradient of the largest activation
    head         the LM head in vocabulary chunks: one (answer tokens x chunk) block of fp32 logits and
                 its exponentials at a time, the answer tokens' hidden states and target rows
    reference    the forward-only pass that precomputes the reference log-probs before training: weights
                 + one block's activations; it is not added to the step (it runs first), the peak is the
                 larger of the two

The worst micro-batch decides the peak: the longest packed row the data makes (pairs are packed end to
end up to --tokens-per-batch; a longer pair gets a row of its own), or the padded batch without packing.

Paths. On Linux (this project's CI) MLX runs on the CPU and quantized layers dequantize one layer at a time
into fp32 for the BLAS (model/cpu_matmul.py): the `workspace` term holds that weight. On a Mac's GPU the
quantized kernels read the 4-bit codes directly (no dequantized copy), so that term is absent; the
other terms are the same arrays. Metal also caps the GPU working set below the RAM size (see `budget`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

GB = float(1 << 30)  # GiB, as Apple counts a Mac's memory and as human() prints

# Bytes per element of activations: the model's dtype (bf16/fp16 checkpoints and their quantized scales).
HALF = 2
FP32 = 4
# The coefficients of the activation terms, fitted by least squares on the measured DPO steps of
# benchmarks/real_sizes.py (`--fit`; BENCHMARKS.md "Real sizes" lists every point and this model's error
# there). For a row of T tokens, in bytes:
#   kept per block for the backward:  SAVED_WIDTH x (hidden + MLP width) x T + SAVED_ATTN x heads x T^2
#   one block's backward at its peak: WORK_WIDTH x (hidden + MLP width) x T + WORK_ATTN x heads x T^2
#   the reference pass (forward):     REF_WIDTH x (hidden + MLP width) x T + REF_ATTN x heads x T^2
# SAVED_WIDTH = 40 is about 20 bf16 values per unit of width and token: the inputs and outputs of every
# linear layer and of the MLP's activation, fp32 copies where a LoRA factor (fp32) meets a bf16 input, the
# norms. Attention adds little in the forward (MLX's CPU attention does not keep the heads x T x T scores);
# its backward materialises them.
SAVED_WIDTH, SAVED_ATTN = 40.20, 0.730
WORK_WIDTH, WORK_ATTN = 36.09, 0.0
REF_WIDTH, REF_ATTN = 29.88, 0.0
# With --grad-checkpoint each block keeps more than its bf16 input: about CHECKPOINT_HIDDEN bytes per unit of
# hidden width and token per block (measured: 4 vs 16 blocks of Llama-3.2-1B, 2 vs 32 of Llama-3.1-8B; the
# same ~20 bytes in both, i.e. some five fp32 copies of the residual stream and its gradient per block).
CHECKPOINT_HIDDEN = 17.70
# LM head chunks: train/lm_head.py's chunk_rows sizes them; per vocabulary row a chunk holds its dequantized
# row (bf16 then fp32) and its (positions x chunk) fp32 logits and exponentials.
HEAD_CHUNKS_LIVE = 2  # the chunk being reduced and the next one being computed


@dataclass
class Shape:
    """What the estimate needs of a model's config.json."""
    hidden: int
    layers: int
    inter: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool
    bits: int | None           # 4/8 for a quantized base, None for float
    group: int = 64
    float_bytes: int = 2       # bytes per parameter of a float base (2 for bf16/fp16, 4 for fp32)
    qkv_bias: bool = False     # Qwen2's q/k/v projections carry biases

    @classmethod
    def of(cls, model_dir: str | Path, quantize: int | None = None) -> "Shape":
        cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
        cfg = {**cfg.get("text_config", {}), **cfg}  # multimodal configs keep the language model's inside
        h = int(cfg.get("hidden_size") or 0)
        heads = int(cfg.get("num_attention_heads") or 1)
        q = cfg.get("quantization") or cfg.get("quantization_config") or {}
        bits = q.get("bits") or quantize
        dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16")
        stored = _stored_float_bytes(Path(model_dir))
        return cls(hidden=h, layers=int(cfg.get("num_hidden_layers") or 0),
                   inter=int(cfg.get("intermediate_size") or 4 * h), vocab=int(cfg.get("vocab_size") or 0),
                   heads=heads, kv_heads=int(cfg.get("num_key_value_heads") or heads),
                   head_dim=int(cfg.get("head_dim") or (h // heads if heads else 0)),
                   tied=bool(cfg.get("tie_word_embeddings", False)), bits=int(bits) if bits else None,
                   group=int(q.get("group_size") or 64), float_bytes=stored or (4 if "32" in dtype else 2),
                   qkv_bias=bool(cfg.get("attention_bias", cfg.get("model_type") == "qwen2")))

    @property
    def q(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv(self) -> int:
        return self.kv_heads * self.head_dim

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(out, in) of a block's linear layers: q, k, v, o, gate, up, down."""
        h, q, kv, i = self.hidden, self.q, self.kv, self.inter
        return [(q, h), (kv, h), (kv, h), (h, q), (i, h), (i, h), (h, i)]

    def bytes_per_param(self) -> float:
        if self.bits:
            return self.bits / 8 + 2 * self.float_bytes / self.group  # codes + a scale and a bias per group
        return float(self.float_bytes)

    def weight_bytes(self) -> float:
        """The base as stored: the matrices (embedding, head, linear layers) at bytes_per_param, the norms
        (and q/k/v biases) in the float dtype: quantization leaves vectors alone."""
        matrices = self.layers * sum(o * i for o, i in self.linear_shapes())
        matrices += self.vocab * self.hidden * (1 if self.tied else 2)
        vectors = self.layers * (2 * self.hidden + (self.q + 2 * self.kv if self.qkv_bias else 0)) + self.hidden
        return matrices * self.bytes_per_param() + vectors * self.float_bytes


_DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2}


def _stored_float_bytes(model_dir: Path) -> int | None:
    """Bytes per value of the checkpoint's float tensors (norms, quantization scales), from a safetensors
    header (8-byte length + JSON; no tensor is read). None when there is no readable safetensors file."""
    for f in sorted(model_dir.glob("model*.safetensors")):
        try:
            with open(f, "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(n)) if 0 < n < 1 << 28 else {}
        except (OSError, ValueError):
            continue
        for name, info in header.items():
            if name.endswith(("norm.weight", ".scales")) and isinstance(info, dict):
                return _DTYPE_BYTES.get(info.get("dtype"))
    return None


@dataclass
class Batch:
    """The worst micro-batch: `rows` rows of `tokens` positions each, `answers` scored answer tokens."""
    rows: int
    tokens: int
    answers: int
    packed: bool
    shared_prompt: bool
    source: str = "max_length"  # "data" when the token lengths of the data decided it


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m if m > 1 else n


def worst_batch(lengths, *, batch_size: int, max_length: int, max_prompt_length: int | None = None,
                tokens_per_batch: int | None = 1024, share_prompt: bool = True, grad_checkpoint: bool = False,
                pad_multiple: int = 32, reference: bool = False) -> Batch:
    """The largest micro-batch training (or, with `reference`, the reference pass) runs, from (prompt, chosen,
    rejected) token lengths per pair after truncation, or the worst case at max_length when `lengths` is None.

    Mirrors train/layout.py: packed rows (pairs end to end up to --tokens-per-batch, a longer pair alone;
    the reference pass fills its rows from all pairs, not batch by batch) unless checkpointing is on, which
    the packed and shared layouts refuse (their blocks run outside the checkpoint): then every answer is its
    own padded row [prompt | answer], 2 x batch_size rows as long as the batch's longest."""
    packed = bool(tokens_per_batch) and not grad_checkpoint
    share = share_prompt and not grad_checkpoint
    source = "data"
    if not lengths:
        p = max_prompt_length or max_length // 2
        lengths, source = [(p, max_length - p, max_length - p)] * batch_size, "max_length"

    def positions(p, c, r):
        return p + c + r - 2 if share else 2 * p + c + r - 2

    if packed:
        # The fullest row a batch can make: its batch_size longest pairs end to end, cut at the budget (a
        # pair longer than the budget has a row of its own). An upper bound of every row the trainer packs.
        by_size = sorted(lengths, key=lambda x: -positions(*x))
        together = by_size if reference else by_size[:batch_size]
        longest = positions(*by_size[0])
        row = max(longest, min(tokens_per_batch, sum(positions(*x) for x in together)))
        answers = min(row, sum(c + r for _, c, r in together))
        return Batch(1, _round_up(row, pad_multiple), answers, True, share, source)
    # Padded, as long as the batch's longest (upper bound: the data's longest); the head scores every row's
    # padded answer positions. Shared prompt: a batch_size rows of prompt and both answers' positions;
    # otherwise each answer its own row [prompt | answer].
    pairs = min(batch_size, len(lengths))
    P = _round_up(max(p for p, _, _ in lengths), pad_multiple)
    C = _round_up(max(max(c, r) for _, c, r in lengths), pad_multiple)
    if share:
        return Batch(pairs, P + 2 * C, 2 * pairs * C, False, True, source)
    longest = max(p + max(c, r) for p, c, r in lengths)
    return Batch(2 * pairs, _round_up(longest, pad_multiple), 2 * pairs * C, False, False, source)


@dataclass
class MemoryEstimate:
    """Bytes per term (see the module docstring); `peak` is what MLX would allocate at most."""
    weights: float
    adapter: float
    blocks: float
    workspace: float
    head: float
    reference: float
    batch: Batch
    path: str                      # "cpu-dequantize" or "gpu-kernels"
    available: float | None        # the memory budget it is compared with (bytes), None if unknown
    available_source: str = ""     # where that budget comes from
    notes: list = field(default_factory=list)

    @property
    def step(self) -> float:
        return self.weights + self.adapter + self.blocks + self.workspace + self.head

    @property
    def peak(self) -> float:
        return max(self.step, self.reference)

    @property
    def fits(self) -> bool | None:
        return None if self.available is None else self.peak <= self.available

    def as_dict(self) -> dict:
        return {"peak_bytes": self.peak, "peak_gb": round(self.peak / GB, 3), "fits": self.fits,
                "available_bytes": self.available, "available_gb": None if self.available is None else round(
                    self.available / GB, 3), "available_source": self.available_source, "path": self.path,
                "terms_bytes": {k: getattr(self, k) for k in ("weights", "adapter", "blocks", "workspace", "head")},
                "reference_pass_bytes": self.reference, "batch": asdict(self.batch), "notes": list(self.notes)}


def lora_params(shape: Shape, rank: int, layers: int, dora: bool = False) -> int:
    per_block = sum(rank * (o + i) + (o if dora else 0) for o, i in shape.linear_shapes())
    return per_block * layers


def estimate(model_dir: str | Path, *, batch_size: int, max_length: int, lora_rank: int = 8,
             lora_layers: int = -1, quantize: int | None = None, grad_checkpoint: bool = False,
             tokens_per_batch: int | None = 1024, share_prompt: bool = True, max_prompt_length: int | None = None,
             lengths=None, dora: bool = False, path: str | None = None,
             available: float | None = None, available_source: str | None = None) -> MemoryEstimate:
    """The estimate for a model folder and these settings; `lengths`: (prompt, chosen, rejected) tokens per
    pair of the data (None: every pair at max_length). `path`: "cpu-dequantize" or "gpu-kernels" (default:
    what this machine runs)."""
    s = Shape.of(model_dir, quantize)
    path = path or default_path()
    b = worst_batch(lengths, batch_size=batch_size, max_length=max_length, max_prompt_length=max_prompt_length,
                    tokens_per_batch=tokens_per_batch, share_prompt=share_prompt, grad_checkpoint=grad_checkpoint)
    weights = s.weight_bytes()
    n_lora = lora_params(s, lora_rank, s.layers if lora_layers < 0 else min(lora_layers, s.layers), dora)
    adapter = n_lora * FP32 * 4  # parameters, gradients, AdamW's first and second moments
    f = activation_features(s, b, grad_checkpoint)
    b_ref = worst_batch(lengths, batch_size=batch_size, max_length=max_length, max_prompt_length=max_prompt_length,
                        tokens_per_batch=tokens_per_batch, share_prompt=share_prompt, grad_checkpoint=grad_checkpoint,
                        reference=True)
    f_ref = activation_features(s, b_ref, False)
    blocks = (SAVED_WIDTH * f["saved_width"] + SAVED_ATTN * f["saved_attn"] + f["checkpoints"]
              + CHECKPOINT_HIDDEN * f["checkpoint_hidden"])
    biggest = max(o * i for o, i in s.linear_shapes())
    dequant = biggest * (FP32 + HALF) if (s.bits and path == "cpu-dequantize") else 0.0
    workspace = WORK_WIDTH * f["work_width"] + WORK_ATTN * f["work_attn"] + dequant
    head = head_bytes(s, b.answers)
    # The reference pass: forward only, one block's activations alive at a time, no adapter state.
    reference = (weights + REF_WIDTH * f_ref["work_width"] + REF_ATTN * f_ref["work_attn"] + dequant
                 + head_bytes(s, b_ref.answers))
    if available is None:
        available, source = default_budget()
    else:
        source = available_source or "given"
    notes = []
    if path == "gpu-kernels":
        notes.append("GPU kernel path: no dequantized copy of a layer (measured on the CPU path; see BENCHMARKS.md)")
    return MemoryEstimate(weights, adapter, blocks, workspace, head, reference, b, path, available, source, notes)


def activation_features(s: Shape, b: Batch, grad_checkpoint: bool) -> dict:
    """The quantities the activation coefficients multiply (see the constants above), and the checkpointed
    block inputs (bf16 hidden states of every block: known exactly, not fitted)."""
    width = (s.hidden + s.inter) * b.rows * b.tokens
    attn = s.heads * b.rows * b.tokens ** 2
    kept = 1 if grad_checkpoint else s.layers
    return {"saved_width": kept * width, "saved_attn": kept * attn, "work_width": width, "work_attn": attn,
            "checkpoints": s.layers * b.rows * b.tokens * s.hidden * HALF if grad_checkpoint else 0.0,
            "checkpoint_hidden": s.layers * s.hidden * b.rows * b.tokens if grad_checkpoint else 0.0}


def head_bytes(s: Shape, answers: int) -> float:
    """The chunked LM head: live chunks (dequantized rows and fp32 logits) plus the answers' hidden states."""
    from ..train.lm_head import chunk_rows  # the trainer's own chunk size

    chunk = chunk_rows(s.vocab, answers, s.hidden)
    per_chunk = chunk * (s.hidden * (HALF + FP32) + answers * 2 * FP32)
    return HEAD_CHUNKS_LIVE * per_chunk + 2 * answers * s.hidden * FP32


def estimate_for_config(cfg, lengths=None, available: float | None = None, available_source: str | None = None,
                        path: str | None = None) -> MemoryEstimate:
    """`estimate` for a TrainConfig (its model resolved to a local folder)."""
    from .load import resolve_model_path

    return estimate(resolve_model_path(cfg.model), batch_size=cfg.batch_size, max_length=cfg.max_length,
                    lora_rank=cfg.lora_rank, lora_layers=cfg.lora_layers, quantize=cfg.quantize,
                    grad_checkpoint=cfg.grad_checkpoint, tokens_per_batch=cfg.tokens_per_batch,
                    share_prompt=cfg.share_prompt, max_prompt_length=cfg.max_prompt_length, lengths=lengths,
                    dora=cfg.dora, path=path, available=available, available_source=available_source)


def default_path() -> str:
    """The compute path of this machine: Metal's kernels on a Mac, the CPU dequantize path elsewhere."""
    try:
        import mlx.core as mx

        return "gpu-kernels" if mx.default_device() == mx.gpu else "cpu-dequantize"
    except Exception:
        return "cpu-dequantize"


def mac_budget(ram_bytes: float) -> float:
    """What a training run may use on a Mac with this much RAM: RAM less what macOS and an open app need
    (2 GB, or 1/8 of the RAM if more). Metal's default GPU working-set limit is lower (about 2/3 of RAM on
    8-16 GB Macs, 3/4 above); past it, `sudo sysctl iogpu.wired_limit_mb=...` raises it, as mlx-lm advises."""
    return ram_bytes - max(2 * GB, ram_bytes / 8)


def default_budget() -> tuple[float | None, str]:
    """(bytes, where from): Metal's recommended working set on a Mac, else physical RAM less the same reserve."""
    try:
        import mlx.core as mx

        info = mx.device_info() if hasattr(mx, "device_info") else {}
        if "max_recommended_working_set_size" in info:  # Metal only: guard, as on Linux it is absent
            return float(info["max_recommended_working_set_size"]), "Metal's recommended working set"
    except Exception:
        pass
    ram = machine_memory()
    return (None, "unknown") if ram is None else (mac_budget(ram), f"{human(ram)} of RAM less a reserve")


def machine_memory() -> float | None:
    """Bytes of physical RAM (None where the OS does not say)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def human(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"
