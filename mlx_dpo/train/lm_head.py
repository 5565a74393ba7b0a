"""The LM head in vocabulary chunks: log p(target) at each position without the (positions x vocab) logits.

    log p(t | h) = h·W[t] - logsumexp_v(h·W[v])

The logsumexp runs over the vocabulary a chunk of rows of W at a time (an online max and sum), so
no more than one (positions x chunk) block of fp32 logits exists; the backward recomputes each chunk
(dh = g·W[t] - Σ_chunks softmax_chunk·g @ W_chunk) instead of keeping any. For a quantized head only
the chunk's rows are unpacked at a time — on the CPU path the whole head was dequantized once per
block of positions before (151,936 x 896 weights, ~3 s per block on this box).

The chunk logits are computed the way the head layer itself computes them (float matmul,
`quantized_matmul`, or the CPU dequantize path), so the numbers agree with `head(h)` up to fp32
summation order (tests/test_logprobs.py). Only the input h gets a gradient: the head is frozen (LoRA
adapts the blocks).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ..model.cpu_matmul import MIN_ROWS, CPUQuantizedEmbedding, CPUQuantizedLinear, dequantized_matmul

# A chunk's arrays — its rows of W dequantized (bf16, then fp32) and its (positions x chunk) fp32 logits and
# exponentials — take about CHUNK_ROW_BYTES(positions, hidden) per vocabulary row; chunks are sized to hold
# about CHUNK_BYTES, and at least VOCAB_CHUNK_MIN rows (smaller products waste the BLAS). Sizing by the
# logits alone made a 128k-vocabulary, 2048-wide head over 1,000 positions take 16,777-row chunks of 0.5 GB
# each (benchmarks/real_sizes.py).
CHUNK_BYTES = 1 << 27
VOCAB_CHUNK_MIN = 1024


def chunk_rows(vocab: int, positions: int, hidden: int) -> int:
    """Vocabulary rows per chunk for this many positions of this width (the memory model uses it too)."""
    per_row = 12 * max(positions, 1) + 12 * hidden
    return min(vocab, max(VOCAB_CHUNK_MIN, CHUNK_BYTES // per_row))


class VocabHead:
    """A head layer seen as rows of W: callable like the layer, plus `token_logps` in vocabulary chunks."""

    def __init__(self, module: nn.Module, tied: bool):
        self.module, self.tied = module, tied
        self.quantized = isinstance(module, (nn.QuantizedLinear, nn.QuantizedEmbedding))
        self.cpu_path = isinstance(module, (CPUQuantizedLinear, CPUQuantizedEmbedding))
        self.vocab = module["weight"].shape[0]

    def __call__(self, x):
        return self.module.as_linear(x) if self.tied else self.module(x)

    @classmethod
    def supports(cls, module: nn.Module) -> bool:
        if isinstance(module, (nn.QuantizedLinear, nn.QuantizedEmbedding)):
            return getattr(module, "mode", "affine") == "affine" and "biases" in module
        return isinstance(module, (nn.Linear, nn.Embedding))

    def weights(self) -> tuple:
        m = self.module
        ws = (m["weight"], m["scales"], m["biases"]) if self.quantized else (m["weight"],)
        return ws + ((m["bias"],) if "bias" in m else ())

    def token_logps(self, hidden: mx.array, targets: mx.array) -> mx.array:
        """log p(target) at each of (rows, C) positions, fp32."""
        rows, C, H = hidden.shape
        n = rows * C
        chunk = chunk_rows(self.vocab, n, H)
        fn = _chunked_logps(self, chunk)
        tok, _ = fn(hidden.reshape(n, H), targets.reshape(n), *self.weights())
        return tok.reshape(rows, C)

    # -- the chunk products, as the layer computes them
    def _rows(self, ws, start, stop):
        return tuple(w[start:stop] for w in ws)

    def logits(self, h, ws):
        """h @ W.T (+ bias) for the rows `ws` of W, fp32, computed as the head layer would."""
        m = self.module
        if self.quantized:
            w, s, b = ws[:3]
            if self.cpu_path and h.shape[0] >= MIN_ROWS:
                z = dequantized_matmul(m.group_size, m.bits)(h, w, s, b)
            else:
                z = mx.quantized_matmul(h, w, scales=s, biases=b, transpose=True, group_size=m.group_size,
                                        bits=m.bits)
        else:
            z = h @ ws[0].T
        if len(ws) > (3 if self.quantized else 1):
            z = z + ws[-1]
        return z.astype(mx.float32)

    def dense(self, ws):
        """The rows `ws` of W as an fp32 matrix (for the backward's softmax @ W)."""
        m = self.module
        if self.quantized:
            return mx.dequantize(ws[0], ws[1], ws[2], m.group_size, m.bits).astype(mx.float32)
        return ws[0].astype(mx.float32)


def _after(done: mx.array, h: mx.array, rows: tuple) -> tuple:
    """(h, rows) made to wait for `done`: the chunk's products and its dequantized rows start only then."""
    out = mx.depends([h, *rows], [done])
    return out[0], tuple(out[1:])


def _chunked_logps(head: VocabHead, chunk: int):
    V = head.vocab
    starts = list(range(0, V, chunk))

    def target_rows(ws, targets):
        return tuple(w[targets] for w in ws)

    @mx.custom_function
    def f(h, targets, *ws):
        m = mx.full((h.shape[0],), -mx.inf, dtype=mx.float32)
        s = mx.zeros((h.shape[0],), dtype=mx.float32)
        for start in starts:
            # One chunk at a time: without this dependency MLX's scheduler runs the chunks' products side
            # by side and keeps every chunk's dequantized rows and logits alive (2.2 GB for a 128k head
            # over 1,000 positions, where one chunk needs 0.2 GB; benchmarks/real_sizes.py).
            z = head.logits(*_after(s, h, head._rows(ws, start, start + chunk)) if start else
                            (h, head._rows(ws, start, start + chunk)))
            new_m = mx.maximum(m, z.max(axis=-1))
            s = s * mx.exp(m - new_m) + mx.exp(z - new_m[:, None]).sum(axis=-1)
            m = new_m
        lse = m + mx.log(s)
        # The target's logit from its own row of W: the same product as inside its chunk.
        tgt = _target_logits(head, h, ws, targets)
        return tgt - lse, lse

    @f.vjp
    def f_vjp(primals, cotangents, outputs):
        h, targets, *ws = primals
        g_tok, g_lse = cotangents
        tok, lse = outputs
        # d tok / dh = W[t] - softmax @ W;  d lse / dh = softmax @ W
        coef = (g_lse - g_tok)[:, None]
        dh = mx.zeros(h.shape, dtype=mx.float32)
        for start in starts:
            hc, rows = _after(dh, h, head._rows(ws, start, start + chunk)) if start else \
                (h, head._rows(ws, start, start + chunk))  # one chunk at a time, as in the forward
            p = mx.exp(head.logits(hc, rows) - lse[:, None])
            dh = dh + (p * coef) @ head.dense(rows)
        dh = dh + g_tok[:, None] * head.dense(target_rows(ws, targets))
        return (dh.astype(h.dtype), mx.zeros_like(targets)) + tuple(mx.zeros_like(w) for w in ws)

    return f


def _target_logits(head: VocabHead, h, ws, targets):
    """h_n · W[t_n] (+ bias[t_n]) per position, fp32: each position's own target row, dequantized."""
    rows = tuple(w[targets] for w in ws)
    z = (h.astype(mx.float32) * head.dense(rows)).sum(axis=-1)
    if len(ws) > (3 if head.quantized else 1):
        z = z + rows[-1].astype(mx.float32)
    return z
