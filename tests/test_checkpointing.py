"""--grad-checkpoint's blocks: the same gradients as without, and the recomputation ordered after the block's
incoming gradient (mlx_dpo/train/checkpointing.py). That prompt sharing refuses checkpointed blocks:
tests/test_prompt_sharing.py."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten


def _lora_grads(model_path, checkpoint: bool):
    from mlx_lm import load

    from mlx_dpo.model.adapters import apply_lora, lora_config
    from mlx_dpo.train.checkpointing import grad_checkpoint

    model, _ = load(model_path)
    apply_lora(model, lora_config(4, 20.0, 0.0, None, -1, False))
    # Non-zero B factors: with B = 0 the A factors' gradients vanish and would compare nothing.
    model.update(_randomised(model.trainable_parameters()))
    cls = type(model.model.layers[0])
    original = cls.__call__
    try:
        if checkpoint:
            grad_checkpoint(model.model.layers[0])
            assert cls.__call__ is not original
        inputs = mx.array(np.random.default_rng(0).integers(0, 300, (2, 24)))

        def loss(params):
            model.update(params)
            return model(inputs).astype(mx.float32).square().mean()

        value, grads = mx.value_and_grad(loss)(model.trainable_parameters())
        mx.eval(value, grads)
        return float(value), dict(tree_flatten(grads))
    finally:
        cls.__call__ = original


def _randomised(params):
    from mlx.utils import tree_map

    return tree_map(lambda a: 0.05 * mx.random.normal(a.shape, key=mx.random.key(a.size)), params)


def test_checkpointed_blocks_give_the_same_loss_and_gradients(tiny_model):
    plain_loss, plain = _lora_grads(tiny_model, False)
    ckpt_loss, ckpt = _lora_grads(tiny_model, True)
    assert plain.keys() == ckpt.keys() and len(plain) > 0
    assert ckpt_loss == plain_loss
    for k in plain:
        assert np.abs(np.array(plain[k])).max() > 0, k
        np.testing.assert_allclose(np.array(ckpt[k]), np.array(plain[k]), rtol=1e-5, atol=1e-7, err_msg=k)

