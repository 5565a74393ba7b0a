"""Gradient checkpointing of transformer blocks whose recomputation waits for the block's gradient.

mlx-lm's `grad_checkpoint` wraps each block in `mx.checkpoint`, whose backward recomputes the block from its
saved input. Nothing orders that recomputation after the gradient coming from the blocks above: MLX's
scheduler is free to recompute every block as soon as its input exists, and then holds all blocks'
activations at once — what checkpointing was meant to avoid. On a 32-block Llama-3.1-8B-shaped 4-bit model
a 2k-token step grew past 22 GB and was killed, where one block's activations are about 2 GB
(benchmarks/real_sizes.py). Here the recomputation depends on the incoming gradient (`mx.depends`), so
blocks are recomputed one at a time, top down, as the backward reaches them. Gradients are the same.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten


def grad_checkpoint(layer: nn.Module) -> None:
    """Checkpoint every block of `type(layer)` (as mlx-lm's function of that name does: the class's
    `__call__` is replaced, so the block class no longer looks like its own `__call__`, which is how
    prompt sharing and packing recognise — and refuse — checkpointed blocks)."""
    cls = type(layer)
    if getattr(cls.__call__, "checkpointed", False):
        return
    call = cls.__call__

    def checkpointed_call(module, x, *args, **kwargs):
        flat = tree_flatten(module.trainable_parameters())
        keys, arrays = [k for k, _ in flat], [v for _, v in flat]

        def run(x, *params):
            module.update(tree_unflatten(list(zip(keys, params))))
            return call(module, x, *args, **kwargs)

        @mx.custom_function
        def block(x, *params):
            return run(x, *params)

        @block.vjp
        def block_vjp(primals, cotangent, output):
            # Recompute only once the gradient from above exists: one block's activations at a time.
            waited = mx.depends(list(primals), [cotangent])
            _, grads = mx.vjp(run, waited, [cotangent])
            return tuple(grads)

        return block(x, *arrays)

    checkpointed_call.checkpointed = True
    cls.__call__ = checkpointed_call
