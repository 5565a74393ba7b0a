"""Held-out evaluation: DPO loss and TRL reward metrics over a whole file, dropout off."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from .distributed import SINGLE, World
from .losses import dpo_losses, pair_stats, stats_to_metrics
from .reference import score_pairs
from ..data.template import TokenizedPair


def metrics_from_logps(policy: dict, ref: dict | None, *, loss: str, beta: float,
                       label_smoothing: float, simpo_gamma: float, prefix: str = "") -> dict:
    """DPO metrics of whole arrays of policy (and reference) log-probs, as returned by score_pairs."""
    n = len(policy["chosen"])
    zeros = np.zeros(n, dtype=np.float32)
    ref_c = ref["chosen"] if ref is not None else zeros
    ref_r = ref["rejected"] if ref is not None else zeros
    pc, pr = mx.array(policy["chosen"]), mx.array(policy["rejected"])
    losses, cr, rr = dpo_losses(pc, pr, mx.array(ref_c), mx.array(ref_r),
                                mx.array(np.maximum(policy["ntok_chosen"], 1)),
                                mx.array(np.maximum(policy["ntok_rejected"], 1)),
                                loss=loss, beta=beta, label_smoothing=label_smoothing,
                                simpo_gamma=simpo_gamma)
    stats = pair_stats(losses, cr, rr, pc, pr, mx.ones(n))
    return stats_to_metrics(np.array(stats).tolist(), prefix)


def evaluate(model, pairs: list[TokenizedPair], ref: dict | None, *, batch_size: int, pad_multiple: int,
             loss: str, beta: float, label_smoothing: float = 0.0, simpo_gamma: float = 0.5,
             pad_id: int = 0, prefix: str = "", world: World = SINGLE, layout=None) -> dict:
    was_training = model.training
    model.eval()
    policy = score_pairs(model, pairs, batch_size, pad_multiple, pad_id, world=world, layout=layout)
    if was_training:
        model.train()
    return metrics_from_logps(policy, ref, loss=loss, beta=beta, label_smoothing=label_smoothing,
                              simpo_gamma=simpo_gamma, prefix=prefix)


def run_eval(cfg, adapter_dir: str | None, log=print) -> dict:
    """`mlx-dpo eval`: reference = base (+ init adapter), policy = that + the trained adapter."""
    from ..model.cpu_matmul import compute_tag
    from ..data.pairs import DataKeys
    from .layout import choose_layout
    from ..model.load import (adapter_weights, apply_lora, attach_adapter, cache_root, load_adapter_weights, load_base,
                        read_adapter_config, set_adapter_weights)
    from ..data.prepare import prepare_strict
    from .reference import model_fingerprint, reference_logps

    loaded = load_base(cfg.model, cfg.quantize, cfg.trust_remote_code, log=log, cpu_dequant=cfg.cpu_dequant_matmul)
    model, tokenizer = loaded.model, loaded.tokenizer
    pad_id = tokenizer.pad_token_id or 0
    if adapter_dir:
        read_adapter_config(adapter_dir)  # fail early, before any compute, on a bad adapter folder
    keys = DataKeys(cfg.prompt_key, cfg.chosen_key, cfg.rejected_key, cfg.system_key)
    pairs = prepare_strict(cfg.data, keys, tokenizer, cfg.max_length, cfg.prompt_limit, log).pairs
    if cfg.init_adapter:
        attach_adapter(model, cfg.init_adapter)
    trained = None
    if adapter_dir:
        # Check the adapter fits this model before any compute or cache write: load it, keep its
        # tensors, and put the starting values back (B = 0 / the init adapter) for the reference.
        if not cfg.init_adapter:
            apply_lora(model, read_adapter_config(adapter_dir))
        start = {k: mx.array(np.array(v)) for k, v in adapter_weights(model).items()}
        load_adapter_weights(model, adapter_dir)
        trained = adapter_weights(model)
        set_adapter_weights(model, start, "the starting adapter")
    layout = choose_layout(model, [pairs], cfg.share_prompt)
    ref = None
    if cfg.loss != "simpo":
        cache = cache_root(cfg.cache_dir)
        key = model_fingerprint(loaded.path, cfg.quantize, cfg.init_adapter, cache, compute_tag(model))
        ref = reference_logps(model, pairs, model_key=key,
                              cache_dir=cache, batch_size=cfg.batch_size, pad_multiple=cfg.pad_multiple,
                              pad_id=pad_id, log=log, label="eval", layout=layout)
    if trained is not None:
        set_adapter_weights(model, trained, str(adapter_dir))
    return evaluate(model, pairs, ref, batch_size=cfg.batch_size, pad_multiple=cfg.pad_multiple, loss=cfg.loss,
                    beta=cfg.beta, label_smoothing=cfg.label_smoothing, simpo_gamma=cfg.simpo_gamma, pad_id=pad_id,
                    layout=layout)
