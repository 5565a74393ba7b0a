"""The DPO training loop: setup -> precompute reference -> compiled steps -> eval, checkpoints, resume.

Determinism: data order is a pure function of (seed, epoch) and the dropout RNG is re-seeded from
(seed, step) before every optimizer step, so a checkpoint needs only the adapter, the optimizer state
and the step counter to continue bit-exactly.

Stopping: SIGINT / SIGTERM finish the current step, save a checkpoint and raise `Interrupted` (the CLI
exits 130 for SIGINT, 143 for SIGTERM). Out of memory, a non-finite loss or a failed write (disk full)
raise TrainingStopped naming the last complete checkpoint, which is left untouched. The run dir is
locked (RUN_DIR/.lock) while a trainer uses it.

Several processes started by `mlx.launch` train data-parallel (see distributed.py): each takes its
share of every global batch, gradients are averaged, and rank 0 alone writes the run dir.
"""

from __future__ import annotations

import signal
import time
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.nn.utils import average_gradients
from mlx.utils import tree_flatten, tree_map

from . import checkpoint as ckpt
from .batching import batches_per_epoch, epoch_order
from ..config import TrainConfig, save_config
from ..model.cpu_matmul import compute_tag
from ..data.pairs import DataKeys
from .distributed import World, check_batch_split, init_world, is_peer_lost, local_batch, peer_lost
from ..errors import TrainingStopped, UsageError
from .evaluation import evaluate
from .layout import choose_layout
from .losses import dpo_losses, pair_stats, stats_to_metrics
from ..fileio import disk_full, kill_point
from ..model.load import apply_lora, cache_root, lora_config, load_adapter_weights, load_base, num_blocks, \
    read_adapter_config, resolve_model_path, save_adapter
from ..data.prepare import prepare_strict
from .control import (OOM_ADVICE, Interrupted, Progress, first_line, install_stop_handlers,
                          is_out_of_memory, restore_handlers)
from .reference import model_fingerprint, reference_logps


def make_schedule(cfg: TrainConfig, total_steps: int):
    main = (optim.cosine_decay(cfg.learning_rate, max(total_steps - cfg.warmup_steps, 1), 0.0)
            if cfg.lr_schedule == "cosine" else (lambda step: mx.array(cfg.learning_rate)))
    if not cfg.warmup_steps:
        return main
    warm = optim.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps)
    return optim.join_schedules([warm, main], [cfg.warmup_steps])


class Trainer:
    def __init__(self, cfg: TrainConfig, log=print, show_progress: bool = True, world: World | None = None):
        self.world = world or init_world(cfg.dist_timeout)
        if not self.world.is_main:  # rank 0 speaks for the run; the others only raise errors
            log, show_progress = (lambda *a, **k: None), False
        self.cfg, self.log, self.show_progress = cfg, log, show_progress
        self.run_dir = Path(cfg.output)
        self.stop_requested = False
        self.stop_signal = signal.SIGINT
        self.lock = ckpt.RunLock(self.run_dir)
        self._saved_step = None

    # ------------------------------------------------------------------ setup
    def setup(self) -> "Trainer":
        try:
            return self._setup()
        except BaseException:
            self.lock.release()
            raise

    def _warn_if_too_big(self, model_path: Path) -> None:
        """Warn (never fail) before loading when the memory estimate exceeds what the machine has."""
        from ..model.memory import estimate, human

        cfg = self.cfg
        try:
            est = estimate(model_path, batch_size=cfg.batch_size, max_length=cfg.max_length,
                           lora_rank=cfg.lora_rank, lora_layers=cfg.lora_layers, quantize=cfg.quantize,
                           grad_checkpoint=cfg.grad_checkpoint)
        except Exception:  # an estimate only; a config.json it cannot read fails properly at load time
            return
        if est.fits is False:
            self.log(f"warning: this run may not fit in memory: about {human(est.total)} needed, "
                     f"{human(est.available)} available. {OOM_ADVICE}")

    def _setup(self) -> "Trainer":
        cfg, world = self.cfg, self.world
        self.local_size = check_batch_split(cfg.batch_size, world)
        if world.is_main:
            self._check_run_dir()
        self._warn_if_too_big(resolve_model_path(cfg.model))
        loaded = load_base(cfg.model, cfg.quantize, cfg.trust_remote_code, log=self.log,
                           cpu_dequant=cfg.cpu_dequant_matmul)
        self.model, self.tokenizer, self.model_path = loaded.model, loaded.tokenizer, loaded.path
        self.pad_id = self.tokenizer.pad_token_id or 0
        keys = DataKeys(cfg.prompt_key, cfg.chosen_key, cfg.rejected_key, cfg.system_key)
        self.train_data = prepare_strict(cfg.data, keys, self.tokenizer, cfg.max_length, cfg.prompt_limit,
                                         self.log).pairs
        self.valid_data = (prepare_strict(cfg.valid_data, keys, self.tokenizer, cfg.max_length,
                                          cfg.prompt_limit, self.log).pairs if cfg.valid_data else None)

        mx.random.seed(cfg.seed)  # LoRA A-factor init
        if cfg.init_adapter:
            self.adapter_cfg = read_adapter_config(cfg.init_adapter)
            apply_lora(self.model, self.adapter_cfg)
            load_adapter_weights(self.model, cfg.init_adapter)
            self.log(f"starting from adapter {cfg.init_adapter} (its LoRA settings are used)")
        else:
            layers = num_blocks(self.model) if cfg.lora_layers == -1 else min(cfg.lora_layers, num_blocks(self.model))
            self.adapter_cfg = lora_config(cfg.lora_rank, cfg.lora_scale, cfg.lora_dropout, cfg.lora_keys,
                                           layers, cfg.dora)
            apply_lora(self.model, self.adapter_cfg)
        if cfg.grad_checkpoint:
            from mlx_lm.tuner.trainer import grad_checkpoint
            grad_checkpoint(self.model.layers[0])
        self.layout = choose_layout(self.model, [self.train_data, self.valid_data], cfg.share_prompt)
        self.log(f"batch layout: {self.layout.name}")

        # The model now equals the starting point (LoRA B = 0, or the init adapter): score the data
        # with it before any update. SimPO is reference-free and skips this.
        self.ref_train = self.ref_valid = None
        if cfg.loss != "simpo":
            cache = cache_root(cfg.cache_dir)
            key = model_fingerprint(self.model_path, cfg.quantize, cfg.init_adapter, cache, compute_tag(self.model))
            ref = partial(reference_logps, self.model, model_key=key, cache_dir=cache,
                          batch_size=cfg.batch_size, pad_multiple=cfg.pad_multiple, pad_id=self.pad_id,
                          log=self.log, world=world, layout=self.layout)
            kill_point("reference")  # test hook: killed while scoring the reference
            try:
                self.ref_train = ref(self.train_data, label="train")
                if self.valid_data:
                    self.ref_valid = ref(self.valid_data, label="valid")
            except OSError as e:
                why = "the disk is full" if disk_full(e) else (e.strerror or str(e))
                raise TrainingStopped(f"could not write the reference cache in {cache} ({why}); nothing "
                                      "was trained. Free some space or pass --cache-dir.") from None
            except (MemoryError, RuntimeError) as e:
                if is_out_of_memory(e):
                    raise TrainingStopped(f"out of memory while scoring the reference ({first_line(e)}); "
                                          f"nothing was trained. {OOM_ADVICE}") from None
                raise

        self.steps_per_epoch = max(1, batches_per_epoch(len(self.train_data), cfg.batch_size) // cfg.grad_accum)
        self.total_steps = cfg.iters or (cfg.epochs or 1) * self.steps_per_epoch
        self.schedule = make_schedule(cfg, self.total_steps)
        self.optimizer = optim.AdamW(learning_rate=self.schedule, weight_decay=cfg.weight_decay)
        self.optimizer.init(self.model.trainable_parameters())
        self.step = 0
        if cfg.resume and world.is_main:
            self.step = ckpt.restore(self.run_dir, self.model, self.optimizer, self.log)
        if world.distributed:  # every rank starts from rank 0's adapter, optimizer state and step
            with world.waiting("receiving the starting state from rank 0"):
                state = world.broadcast({"params": self.model.trainable_parameters(),
                                         "opt": self.optimizer.state, "step": mx.array(self.step)})
                mx.eval(state)
            self.model.update(state["params"])
            self.optimizer.state = state["opt"]
            self.step = int(state["step"].item())
            self.log(f"data-parallel over {world.size} processes: global batch {cfg.batch_size}, "
                     f"{self.local_size} pairs per process")
        n_train = sum(v.size for _, v in tree_flatten(self.model.trainable_parameters()))
        self.log(f"{len(self.train_data)} training pairs, {self.total_steps} steps, "
                 f"{n_train:,} trainable parameters ({self.adapter_cfg['fine_tune_type']})")
        return self

    def _check_run_dir(self):
        d = self.run_dir
        if d.exists() and not d.is_dir():
            raise UsageError(f"{d}: --output exists and is not a folder")
        # Only complete checkpoints count: a run killed while writing its first one can start over.
        has_run = (d / "adapters.safetensors").exists() or ckpt.latest(d) is not None
        if self.cfg.resume and not ckpt.latest(d):
            raise UsageError(f"{d}: nothing to resume (no complete checkpoint in {d / 'checkpoints'})")
        if not self.cfg.resume and has_run:
            raise UsageError(f"{d}: already holds a run; pass --resume to continue it or choose another --output")
        if d.is_dir():
            self.lock.acquire()  # refuse now, before loading anything, if another trainer uses it

    # ------------------------------------------------------------------ the step
    def loss_fn(self, model, *arrays):
        """Mean DPO loss of a micro-batch (normalised by the step's pair count) and its summed stats.

        `arrays` = the batch's own arrays (batch.to_mx(), per the layout), ref_c, ref_r, pair_mask, denom.
        """
        cfg = self.cfg
        *batch_arrays, ref_c, ref_r, pair_mask, denom = arrays
        logps, ntok = self.layout.logps(model, *batch_arrays)
        B = pair_mask.shape[0]
        # Rows [0, B) are chosen, [B, 2B) rejected (see batching.py).
        losses, cr, rr = dpo_losses(logps[:B], logps[B:], ref_c, ref_r,
                                    mx.maximum(ntok[:B], 1), mx.maximum(ntok[B:], 1), loss=cfg.loss,
                                    beta=cfg.beta, label_smoothing=cfg.label_smoothing,
                                    simpo_gamma=cfg.simpo_gamma)
        # Divide by the pairs of the whole optimizer step, so summed micro-batch gradients
        # are the gradient of the step's mean loss (a short last batch is weighted correctly).
        loss = (losses * pair_mask).sum() / denom
        return loss, pair_stats(losses, cr, rr, logps[:B], logps[B:], pair_mask)

    def step_arrays(self, step: int) -> list[tuple]:
        """The model inputs of each micro-batch of optimizer step `step` (1-based)."""
        micro = self._micro_batches(step)
        denom = self._loss_denominator(micro)
        return [self._arrays(b, denom) for _, b, _ in micro]

    def _loss_denominator(self, micro) -> float:
        # The step's pairs over all ranks, divided by the rank count: averaging the ranks' gradients
        # then yields the gradient of the global mean loss (exactly the 1-process value when W = 1).
        return sum(n for _, _, n in micro) / self.world.size

    def _build_step(self):
        model, optimizer, cfg = self.model, self.optimizer, self.cfg
        loss_fn = self.loss_fn

        value_and_grad = nn.value_and_grad(model, loss_fn)
        state = [model.state, optimizer.state, mx.random.state]
        world = self.world

        @partial(mx.compile, inputs=state, outputs=state)
        def step(arrays, prev_grad, do_update):
            (_, stats), grad = value_and_grad(model, *arrays)
            if prev_grad is not None:
                grad = tree_map(lambda a, b: a + b, grad, prev_grad)
            grad_norm = mx.array(0.0)
            if do_update:
                if world.distributed:
                    grad = average_gradients(grad, group=world.group)
                if cfg.max_grad_norm is not None:
                    grad, grad_norm = optim.clip_grad_norm(grad, cfg.max_grad_norm)
                optimizer.update(model, grad)
                grad = None
            return stats, grad, grad_norm

        return step

    def _micro_batches(self, step: int):
        """The grad_accum micro-batches of optimizer step `step` (1-based), as (epoch, this rank's
        Batch, pairs in the global batch) triples."""
        cfg, out = self.cfg, []
        n_batches = batches_per_epoch(len(self.train_data), cfg.batch_size)
        for k in range(cfg.grad_accum):
            g = (step - 1) * cfg.grad_accum + k            # global micro-batch number
            epoch, pos = divmod(g, self.steps_per_epoch * cfg.grad_accum)
            if pos >= n_batches:                            # grad_accum does not divide the epoch
                pos %= n_batches
            if getattr(self, "_order_epoch", None) != epoch:
                self._order = epoch_order(self.train_data, cfg.batch_size, cfg.seed, epoch, self.layout.sort_key)
                self._order_epoch = epoch
            indices = self._order[pos]
            batch = local_batch(self.train_data, indices, self.world, self.local_size, cfg.pad_multiple,
                                self.pad_id, self.layout.make)
            out.append((epoch + (pos + 1) / n_batches, batch, len(indices)))
        return out

    def _arrays(self, batch, denom):
        ref_c = self.ref_train["chosen"][batch.indices] if self.ref_train else np.zeros(len(batch.indices), np.float32)
        ref_r = self.ref_train["rejected"][batch.indices] if self.ref_train else np.zeros(len(batch.indices), np.float32)
        return (*batch.to_mx(), mx.array(ref_c), mx.array(ref_r), mx.array(batch.pair_mask), mx.array(float(denom)))

    # ------------------------------------------------------------------ the loop
    def train(self, stop_at_step: int | None = None) -> dict:
        """Run to the end (or to `stop_at_step`, saving a checkpoint there). Returns the last metrics row."""
        try:
            if self.world.is_main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                self.lock.acquire()
            return self._train(stop_at_step)
        except (MemoryError, RuntimeError) as e:  # outside the step itself, e.g. a held-out evaluation
            if self.world.distributed and is_peer_lost(e):
                raise peer_lost(self.world.rank, f"after step {self.step}", e) from None
            if not is_out_of_memory(e):
                raise
            raise TrainingStopped(f"out of memory after step {self.step} ({first_line(e)}). Last good "
                                  f"checkpoint: {ckpt.latest(self.run_dir) or 'none'}. {OOM_ADVICE}") from None
        except OSError as e:  # a write failed (disk full, permissions): earlier checkpoints are intact
            prev = ckpt.latest(self.run_dir)
            why = "the disk is full" if disk_full(e) else (e.strerror or str(e))
            raise TrainingStopped(f"could not write {e.filename or self.run_dir}: {why}; "
                                  + (f"the last checkpoint {prev} is intact. Free some space, then resume with "
                                     "--resume." if prev else "there is no checkpoint yet.")) from None
        finally:
            self.lock.release()

    def _train(self, stop_at_step: int | None) -> dict:
        cfg, world = self.cfg, self.world
        if world.is_main:
            save_config(cfg, self.run_dir / "config.yaml")
        metrics = ckpt.MetricsLog(self.run_dir / "metrics.jsonl", keep_until=self.step) if world.is_main else None
        step_fn = self._build_step()
        self.model.train()
        window, tokens, t0, last, logged = None, 0, time.perf_counter(), {}, self.step
        bar = Progress(self.total_steps, self.step, self.show_progress, self.log)
        eval_every = cfg.eval_every or max(1, self.total_steps // 10)
        old_handlers = install_stop_handlers(self)
        try:
            while self.step < self.total_steps:
                s = self.step + 1
                mx.random.seed(cfg.seed * 1_000_003 + s)  # dropout RNG from (seed, step): resumable
                micro = self._micro_batches(s)
                denom = self._loss_denominator(micro)
                grad = step_stats = None
                try:
                    with world.waiting(f"step {s}"):
                        for k, (epoch, batch, _) in enumerate(micro):
                            stats, grad, _ = step_fn(self._arrays(batch, denom), grad, k == len(micro) - 1)
                            # Sync point per micro-batch: bounds the lazy graph (and memory) to one batch.
                            mx.eval(stats, grad, self.model.trainable_parameters(), self.optimizer.state)
                            step_stats = stats if step_stats is None else step_stats + stats
                            tokens += batch.n_tokens
                        step_stats = world.all_sum(step_stats)  # global figures: every rank's pairs
                        mx.eval(step_stats)
                    window = step_stats if window is None else window + step_stats
                except (MemoryError, RuntimeError) as e:
                    if not is_out_of_memory(e):
                        raise
                    raise TrainingStopped(f"out of memory at step {s} ({first_line(e)}); stopped without "
                                          f"saving it. Last good checkpoint: {ckpt.latest(self.run_dir) or 'none'}. "
                                          f"{OOM_ADVICE}") from None
                kill_point("step", s)  # test hook: killed after an update, before it is logged or saved
                if not np.all(np.isfinite(np.array(window))):
                    raise TrainingStopped(f"non-finite loss at step {s}; stopped without saving it. Last good "
                                          f"checkpoint: {ckpt.latest(self.run_dir) or 'none'}. Try a lower "
                                          "--learning-rate or --beta.")
                self.step = s
                if s % cfg.log_every == 0 or s == self.total_steps:
                    dt = time.perf_counter() - t0
                    last = {"step": s, "epoch": round(epoch, 4), **stats_to_metrics(np.array(window).tolist()),
                            "learning_rate": float(self.schedule(mx.array(s - 1))),
                            **self._throughput(tokens, dt), "step_seconds": dt / (s - logged)}
                    if metrics:
                        metrics.write(last)
                    bar.update(s, last)
                    window, tokens, t0, logged = None, 0, time.perf_counter(), s
                if self.valid_data and (s % eval_every == 0 or s == self.total_steps):
                    row = {"step": s, **self.evaluate_valid()}
                    if metrics:
                        metrics.write(row)
                    bar.note(f"step {s}: eval loss {row['eval/loss']:.4f}, "
                             f"accuracy {row['eval/rewards/accuracies']:.3f}, margin {row['eval/rewards/margins']:.3f}")
                # A stop signal may reach only one process: all ranks agree before acting on it.
                self.stop_requested = world.any(self.stop_requested)
                if s % cfg.save_every == 0 or s == stop_at_step or self.stop_requested:
                    self.save_checkpoint()
                    if self.stop_requested:  # mlx.launch ends every rank once one exits: wait for rank 0
                        world.any(False, "waiting for rank 0 to write the checkpoint")
                if s == stop_at_step:
                    break
                if self.stop_requested:
                    raise Interrupted(self.stop_signal)
            if self.step >= self.total_steps and self._saved_step != self.step and world.is_main:
                if ckpt.latest(self.run_dir) != ckpt.step_dir(self.run_dir, self.step):
                    self.save_checkpoint()  # the final adapter (save_checkpoint also writes RUN_DIR's copy)
                else:
                    # Resumed at the end: a kill may have come between the checkpoint and RUN_DIR's copy.
                    save_adapter(self.model, self.run_dir, self.adapter_cfg)
        finally:
            bar.close()
            restore_handlers(old_handlers)
        return last

    def _throughput(self, tokens: int, dt: float) -> dict:
        """tokens/s summed over ranks and the largest per-rank memory peak (plus each rank's figures)."""
        per_rank = self.world.gather_floats([tokens / dt if dt > 0 else 0.0, mx.get_peak_memory() / 1e9])
        out = {"tokens_per_second": sum(r[0] for r in per_rank), "peak_memory_gb": max(r[1] for r in per_rank)}
        if self.world.distributed:
            out.update({"ranks": self.world.size, "rank_tokens_per_second": [r[0] for r in per_rank],
                        "rank_peak_memory_gb": [r[1] for r in per_rank]})
        return out

    def evaluate_valid(self) -> dict:
        cfg = self.cfg
        return evaluate(self.model, self.valid_data, self.ref_valid, batch_size=cfg.batch_size,
                        pad_multiple=cfg.pad_multiple, loss=cfg.loss, beta=cfg.beta,
                        label_smoothing=cfg.label_smoothing, simpo_gamma=cfg.simpo_gamma,
                        pad_id=self.pad_id, prefix="eval/", world=self.world, layout=self.layout)

    def save_checkpoint(self):
        if not self.world.is_main:  # rank 0 writes; the others hold the same state
            self._saved_step = self.step
            return
        n_batches = batches_per_epoch(len(self.train_data), self.cfg.batch_size)
        consumed = self.step * self.cfg.grad_accum
        per_epoch = self.steps_per_epoch * self.cfg.grad_accum
        position = {"epoch": consumed // per_epoch, "batch_in_epoch": consumed % per_epoch,
                    "batches_per_epoch": n_batches, "seed": self.cfg.seed,
                    "rng": "dropout RNG re-seeded from (seed, step) before each step"}
        path = ckpt.save(self.run_dir, self.step, self.model, self.optimizer, self.adapter_cfg, position)
        save_adapter(self.model, self.run_dir, self.adapter_cfg)
        self._saved_step = self.step
        self.log(f"checkpoint saved: {path}")


