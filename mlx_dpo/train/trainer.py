"""The DPO training loop: a session's model and pairs -> compiled steps -> eval, checkpoints, resume.

Lifecycle: `Trainer(cfg, report).setup()` checks the run dir and builds the Session (model, adapter,
pairs, layout, reference); `train()` runs the steps and writes the run dir. Progress, metrics and
phases go to the Reporter (see events.py); nothing here prints.

Determinism: data order is a pure function of (seed, epoch) and the dropout RNG is re-seeded from
(seed, step) before every optimizer step, so a checkpoint needs only the adapter, the optimizer state
and the step counter to continue bit-exactly; it also keeps the summed stats of the steps since the last
metrics row, so a resumed run's rows are an uninterrupted run's (wall-clock figures aside).

What the model says: every evaluation also answers a few held-out prompts greedily (samples.py, events
`samples`, RUN_DIR/samples.jsonl) and checks the run's health (health.py, `warning` events): sampling
never touches the training RNG stream, so a run with or without it ends with the same adapter.

Stopping: SIGINT / SIGTERM finish the current step, save a checkpoint and raise `Interrupted` (the CLI
exits 130 for SIGINT, 143 for SIGTERM). Out of memory, a non-finite loss or a failed write (disk full)
raise TrainingStopped naming the last complete checkpoint, which is left untouched. With
--stop-on-collapse, the first health warning saves a checkpoint and raises TrainingStopped naming the
last checkpoint that passed its checks (every check that passes then saves one). The run dir is
locked (RUN_DIR/.lock) while a trainer uses it.

Several processes started by `mlx.launch` train data-parallel (see distributed.py): each takes its
share of every global batch, gradients are averaged, and rank 0 alone writes the run dir.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.nn.utils import average_gradients
from mlx.utils import tree_flatten, tree_map

from . import checkpoint as ckpt
from .batching import batches_per_epoch, epoch_order, epochs_to_run, total_steps
from ..config import TrainConfig, save_config
from .control import OOM_ADVICE, Interrupted, StopSignals, is_out_of_memory
from .distributed import World, check_batch_split, init_world, is_peer_lost, local_batch, local_rows, peer_lost
from ..errors import TrainingStopped, UsageError, first_line
from .events import Reporter
from .health import HealthMonitor
from .layout import PackedLayout
from .losses import Scores
from ..fileio import write_failure
from ..model.adapters import save_adapter
from .resume import NothingToDo, checked_config, checkpoint_state, nothing_to_do, planned_steps
from .samples import SAMPLES_FILE, SampleWatch
from .session import Session

# Wall-clock time for the throughput figures (a module attribute: a test swaps in a fake clock).
clock = time.perf_counter


def make_schedule(cfg: TrainConfig, total_steps: int):
    main = (optim.cosine_decay(cfg.learning_rate, max(total_steps - cfg.warmup_steps, 1), 0.0)
            if cfg.lr_schedule == "cosine" else (lambda step: mx.array(cfg.learning_rate)))
    if not cfg.warmup_steps:
        return main
    warm = optim.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps)
    return optim.join_schedules([warm, main], [cfg.warmup_steps])


@dataclass
class MicroBatch:
    """One micro-batch of an optimizer step: the loss function's inputs and its bookkeeping.

    `inputs` is a dict of MLX arrays (a tree mx.compile accepts):
      batch        the layout's model-side arrays (batch.to_mx(): chosen rows [0, B), rejected [B, 2B))
      ref_chosen   (B,) reference log-probs of the chosen answers (zeros for reference-free losses)
      ref_rejected (B,) the same for the rejected answers
      pair_mask    (B,) 1 for a real pair, 0 for a filler row
      denom        ()   pairs of the whole optimizer step (over all ranks) / number of ranks
      nll_scale    ()   pairs / chosen-answer tokens of the whole step: NLL terms (sft, cpo, orpo) then
                        average over every chosen token of the step, as TRL's cross-entropy over a batch
      labels       (B,) KTO only: 1 for a desirable example, 0 for an undesirable one
    """

    epoch: float   # fractional epoch reached after this micro-batch
    inputs: dict
    n_tokens: int  # real tokens, for tokens/s


class Trainer:
    def __init__(self, cfg: TrainConfig, report: Reporter | None = None, world: World | None = None):
        self.world = world or init_world(cfg.dist_timeout)
        # Rank 0 speaks for the run; the other ranks only raise errors.
        self.report = report if (report is not None and self.world.is_main) else Reporter()
        self.cfg = cfg
        self.run_dir = Path(cfg.output)
        self.lock = ckpt.RunLock(self.run_dir)
        self._saved_step = None
        self._order_epoch, self._order = None, []
        self._recent: list[dict] = []          # training rows since the last health check
        self._healthy: tuple[int, str] | None = None  # (step, checkpoint) of the last check that passed
        self._start: list[dict] = []  # the starting model's sample answers (step 0 of samples.jsonl)

    @property
    def model(self) -> nn.Module:
        return self.session.model

    # ------------------------------------------------------------------ setup
    def setup(self) -> "Trainer":
        try:
            return self._setup()
        except BaseException:
            self.lock.release()
            raise

    def _setup(self) -> "Trainer":
        cfg, world = self.cfg, self.world
        self.local_size = check_batch_split(cfg.batch_size, world)
        done = None
        if world.is_main:
            done = self._check_run_dir()
            cfg = self.cfg  # a resume keeps the run's own settings (resume.checked_config)
        if world.any(done is not None, "agreeing whether there is anything to do"):
            raise done or NothingToDo("nothing to do (rank 0 says why)")
        self.session = Session.for_training(cfg, self.report, world)

        batches = batches_per_epoch(len(self.session.train_pairs), cfg.batch_size)
        self.steps_per_epoch = max(1, batches // cfg.grad_accum)
        self.total_steps = total_steps(cfg, batches)
        if not cfg.iters and not cfg.epochs and (epochs := epochs_to_run(cfg, self.steps_per_epoch)) > 1:
            self.report.log(f"small data: {len(self.session.train_pairs)} pairs make {self.steps_per_epoch} step(s) an "
                            f"epoch; training {epochs} epochs ({self.total_steps} steps, --min-steps "
                            f"{cfg.min_steps}) so the adapter moves; --epochs or --iters sets it")
        self.schedule = make_schedule(cfg, self.total_steps)
        self.optimizer = optim.AdamW(learning_rate=self.schedule, weight_decay=cfg.weight_decay)
        self.optimizer.init(self.model.trainable_parameters())
        # Before any resume: the adapter still holds its starting values (the reference model's).
        self.watch = SampleWatch.for_session(self.session, cfg.sample_prompts) if world.is_main else None
        checked = self.session.valid_pairs or self.session.train_pairs
        self.health = HealthMonitor(self.session.loss, np.mean([len(p.chosen) for p in checked]),
                                    {"learning_rate": cfg.learning_rate, "beta": cfg.beta})
        self.step = 0
        if cfg.resume and world.is_main:
            self.step = ckpt.restore(self.run_dir, self.model, self.optimizer, self.report.log)
        if world.distributed:  # every rank starts from rank 0's adapter, optimizer state and step
            with world.waiting("receiving the starting state from rank 0"):
                state = world.broadcast({"params": self.model.trainable_parameters(),
                                         "opt": self.optimizer.state, "step": mx.array(self.step)})
                mx.eval(state)
            self.model.update(state["params"])
            self.optimizer.state = state["opt"]
            self.step = int(state["step"].item())
            self.report.log(f"data-parallel over {world.size} processes: global batch {cfg.batch_size}, "
                            f"{self.local_size} pairs per process")
        if cfg.resume and self.step >= self.total_steps:  # a total only the loaded data could tell
            if not world.is_main:
                raise NothingToDo("nothing to do (rank 0 says why)")
            raise nothing_to_do(self.run_dir, ckpt.latest(self.run_dir), self.step, cfg, self.total_steps)
        self.report.log(f"{len(self.session.train_pairs)} training pairs, {self.total_steps} steps, "
                        f"{self.trainable_parameters():,} trainable parameters "
                        f"({self.session.adapter_cfg['fine_tune_type']})")
        return self

    def trainable_parameters(self) -> int:
        return sum(v.size for _, v in tree_flatten(self.model.trainable_parameters()))

    def _check_run_dir(self) -> NothingToDo | None:
        """Refuse a run dir that cannot be used as asked (UsageError); on resume, check the settings
        against the run's and return NothingToDo when its checkpoint already has the steps asked for."""
        d = self.run_dir
        if d.exists() and not d.is_dir():
            raise UsageError(f"{d}: --output exists and is not a folder")
        # Only complete checkpoints count: a run killed while writing its first one can start over.
        last = ckpt.latest(d)
        has_run = (d / "adapters.safetensors").exists() or last is not None
        if self.cfg.resume and not last:
            raise UsageError(f"{d}: nothing to resume (no complete checkpoint in {d / 'checkpoints'})")
        if not self.cfg.resume and has_run:
            raise UsageError(f"{d}: already holds a run; pass --resume to continue it or choose another --output")
        if self.cfg.resume:
            self.cfg = checked_config(d, self.cfg)
        if d.is_dir():
            self.lock.acquire()  # refuse now, before loading anything, if another trainer uses it
        if self.cfg.resume:
            state = checkpoint_state(last)
            total = planned_steps(self.cfg, state)
            if state and total is not None and state["step"] >= total:
                return nothing_to_do(d, last, state["step"], self.cfg, total)
        return None

    # ------------------------------------------------------------------ the step
    def loss_fn(self, model, inputs: dict):
        """Mean DPO loss of a micro-batch (normalised by the step's pair count) and its summed stats."""
        logps, ntok = self.session.layout.logps(model, inputs["batch"])
        pair_mask = inputs["pair_mask"]
        B = pair_mask.shape[0]
        # Rows [0, B) are chosen, [B, 2B) rejected (see batching.py). KTO: labels 1 desirable, 0 undesirable,
        # and rows [B, 2B) are the KL completions.
        x = Scores(logps[:B], logps[B:], inputs["ref_chosen"], inputs["ref_rejected"], mx.maximum(ntok[:B], 1),
                   mx.maximum(ntok[B:], 1), pair_mask, inputs.get("labels"), inputs["nll_scale"])
        loss_kind = self.session.loss
        losses = loss_kind.losses(x)
        # Divide by the pairs of the whole optimizer step, so summed micro-batch gradients
        # are the gradient of the step's mean loss (a short last batch is weighted correctly).
        loss = (losses * pair_mask).sum() / inputs["denom"]
        return loss, loss_kind.stats(x, losses)

    def _build_step(self):
        model, optimizer, cfg, world = self.model, self.optimizer, self.cfg, self.world
        value_and_grad = nn.value_and_grad(model, self.loss_fn)
        state = [model.state, optimizer.state, mx.random.state]

        @partial(mx.compile, inputs=state, outputs=state)
        def step(inputs, prev_grad, do_update):
            (_, stats), grad = value_and_grad(model, inputs)
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

    def micro_batches(self, step: int) -> list[MicroBatch]:
        """The grad_accum micro-batches of optimizer step `step` (1-based), this rank's share of each."""
        cfg, s = self.cfg, self.session
        n_batches = batches_per_epoch(len(s.train_pairs), cfg.batch_size)
        picked = []
        for k in range(cfg.grad_accum):
            g = (step - 1) * cfg.grad_accum + k            # global micro-batch number
            epoch, pos = divmod(g, self.steps_per_epoch * cfg.grad_accum)
            if pos >= n_batches:                            # grad_accum does not divide the epoch
                pos %= n_batches
            if self._order_epoch != epoch:
                self._order = epoch_order(s.train_pairs, cfg.batch_size, cfg.seed, epoch, s.layout.sort_key)
                self._order_epoch = epoch
            picked.append((epoch + (pos + 1) / n_batches, self._order[pos]))
        # The step's pairs over all ranks, divided by the rank count: averaging the ranks' gradients
        # then yields the gradient of the global mean loss (exactly the 1-process value when W = 1).
        denom = sum(len(indices) for _, indices in picked) / self.world.size
        nll_scale = self.nll_scale([i for _, indices in picked for i in indices])
        out = []
        for epoch, indices in picked:
            if isinstance(s.layout, PackedLayout):  # one micro-batch per packed row of this rank's pairs
                parts = local_rows(s.layout, s.train_pairs, indices, self.world, cfg.pad_multiple, s.pad_id)
            else:
                parts = [local_batch(s.train_pairs, indices, self.world, self.local_size, cfg.pad_multiple,
                                     s.pad_id, s.layout.make)]
            out.extend(MicroBatch(epoch, self._loss_inputs(b, denom, nll_scale), b.n_tokens) for b in parts)
        return out

    def nll_scale(self, indices) -> float:
        """Pairs / chosen-answer tokens of these pairs (see MicroBatch: nll_scale)."""
        tokens = sum(max(len(self.session.train_pairs[i].chosen), 1) for i in indices)
        return len(indices) / max(tokens, 1)

    def _loss_inputs(self, batch, denom: float, nll_scale: float | None = None) -> dict:
        ref = self.session.ref_train
        zeros = np.zeros(len(batch.indices), np.float32)
        if nll_scale is None:  # a batch on its own: its real pairs make the step
            nll_scale = self.nll_scale(batch.indices[: batch.n_pairs])
        inputs = {"batch": batch.to_mx(),
                  "ref_chosen": mx.array(ref["chosen"][batch.indices] if ref else zeros),
                  "ref_rejected": mx.array(ref["rejected"][batch.indices] if ref else zeros),
                  "pair_mask": mx.array(batch.pair_mask), "denom": mx.array(float(denom)),
                  "nll_scale": mx.array(float(nll_scale))}
        if self.session.train_labels is not None:
            inputs["labels"] = mx.array(self.session.train_labels[batch.indices])
        return inputs

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
            raise TrainingStopped(f"could not write {e.filename or self.run_dir}: {write_failure(e)}; "
                                  + (f"the last checkpoint {prev} is intact. Free some space, then resume with "
                                     "--resume." if prev else "there is no checkpoint yet.")) from None
        finally:
            self.lock.release()

    def _train(self, stop_at_step: int | None) -> dict:
        cfg, world, report = self.cfg, self.world, self.report
        if world.is_main:
            save_config(cfg, self.run_dir / "config.yaml")
        metrics = ckpt.MetricsLog(self.run_dir / "metrics.jsonl", keep_until=self.step) if world.is_main else None
        samples = self._start_samples() if self.watch is not None else None
        step_fn = self._build_step()
        self.model.train()
        # Throughput counts the optimizer steps only: held-out evaluation and checkpoints are timed apart,
        # or the step after each of them would absorb their time.
        window, tokens, busy, last, logged = None, 0, 0.0, {}, self.step
        pending = ckpt.log_window(self.run_dir, self.step) if metrics and cfg.resume else None
        if pending:  # the steps since the last row: the next row covers them as it would have unresumed
            window = mx.array(np.array(pending["stats"], dtype=pending["dtype"]))
            tokens, busy, logged = pending["tokens"], pending["seconds"], pending["since"]
        eval_every = cfg.eval_every or max(1, self.total_steps // 10)
        report.phase("train", f"training {self.total_steps} steps")
        report.start(self.step, self.total_steps, len(self.session.train_pairs), self.trainable_parameters())
        try:
            with StopSignals(report.log) as stop:
                while self.step < self.total_steps:
                    s = self.step + 1
                    mx.random.seed(cfg.seed * 1_000_003 + s)  # dropout RNG from (seed, step): resumable
                    started = clock()
                    stats, n_tokens, epoch = self._optimizer_step(step_fn, s)
                    busy += clock() - started
                    window = stats if window is None else window + stats
                    tokens += n_tokens
                    if not np.all(np.isfinite(np.array(window))):
                        raise TrainingStopped(f"non-finite loss at step {s}; stopped without saving it. Last good "
                                              f"checkpoint: {ckpt.latest(self.run_dir) or 'none'}. Try a lower "
                                              "--learning-rate or --beta.")
                    self.step = s
                    report.progress(s, self.total_steps)
                    if s % cfg.log_every == 0 or s == self.total_steps:
                        last = {"step": s, "epoch": round(epoch, 4), **self.session.loss.to_metrics(np.array(window).tolist()),
                                "learning_rate": float(self.schedule(mx.array(s - 1))),
                                **self._throughput(tokens, busy), "step_seconds": busy / (s - logged)}
                        self._write_row(metrics, last)
                        window, tokens, busy, logged = None, 0, 0.0, s
                    collapse = healthy = False
                    if s % eval_every == 0 or s == self.total_steps:
                        crossed = self._evaluate_and_check(s, metrics, samples)
                        if cfg.stop_on_collapse:  # every rank acts on rank 0's verdict (its samples)
                            collapse = world.any(bool(crossed), "agreeing on the run's health")
                            healthy = not collapse
                    # A stop signal may reach only one process: all ranks agree before acting on it.
                    stop.requested = world.any(stop.requested)
                    if s % cfg.save_every == 0 or s == stop_at_step or stop.requested or collapse or healthy:
                        self.save_checkpoint(None if window is None else {
                            "since": logged, "stats": np.array(window).tolist(), "dtype": str(np.array(window).dtype),
                            "tokens": tokens, "seconds": busy})
                        if stop.requested:  # mlx.launch ends every rank once one exits: wait for rank 0
                            world.any(False, "waiting for rank 0 to write the checkpoint")
                    if healthy:
                        self._healthy = (s, str(ckpt.step_dir(self.run_dir, s)))
                    if collapse:
                        raise TrainingStopped(self._collapse_text(s))
                    if s == stop_at_step:
                        break
                    if stop.requested:
                        raise Interrupted(stop.signum)
            if self.step >= self.total_steps and self._saved_step != self.step and world.is_main:
                self.save_checkpoint()  # the final adapter (save_checkpoint also writes RUN_DIR's copy)
        finally:
            report.end()
        return last

    def _optimizer_step(self, step_fn, s: int):
        """Run step `s`'s micro-batches (the last one updates the weights); return its global stats."""
        world, grad, step_stats, n_tokens, epoch = self.world, None, None, 0, 0.0
        try:
            with world.waiting(f"step {s}"):
                micro = self.micro_batches(s)
                for k, mb in enumerate(micro):
                    stats, grad, _ = step_fn(mb.inputs, grad, k == len(micro) - 1)
                    # Sync point per micro-batch: bounds the lazy graph (and memory) to one batch.
                    mx.eval(stats, grad, self.model.trainable_parameters(), self.optimizer.state)
                    step_stats = stats if step_stats is None else step_stats + stats
                    n_tokens, epoch = n_tokens + mb.n_tokens, mb.epoch
                step_stats = world.all_sum(step_stats)  # global figures: every rank's pairs
                mx.eval(step_stats)
        except (MemoryError, RuntimeError) as e:
            if not is_out_of_memory(e):
                raise
            raise TrainingStopped(f"out of memory at step {s} ({first_line(e)}); stopped without saving it. "
                                  f"Last good checkpoint: {ckpt.latest(self.run_dir) or 'none'}. {OOM_ADVICE}") from None
        return step_stats, n_tokens, epoch

    def _write_row(self, metrics: ckpt.MetricsLog | None, row: dict) -> None:
        if metrics:
            metrics.write(row)
        self.report.metrics(row)
        if "loss" in row:
            self._recent.append(row)

    # ------------------------------------------------------------------ what the model says, and its health
    def _evaluate_and_check(self, s: int, metrics, samples) -> list[str]:
        """Held-out evaluation (if there is held-out data), sample answers and the health checks of step
        `s`; returns the kinds of health problem found now (warned about the first time each is seen)."""
        report, row, answers = self.report, None, None
        if self.session.valid_pairs:
            started = clock()
            row = {"step": s, **self.evaluate_valid()}
            row["eval/seconds"] = clock() - started
        if self.watch is not None:
            started = clock()
            answers = self.watch.answers()
        # Held-out metrics where there are some, else the training rows since the last check.
        source, prefix = (row, "eval/") if row else (_mean_row(self._recent), "")
        self._recent = []
        signals = self.health.signals(source, prefix, answers, self._start)
        crossed = self.health.crossed(signals)
        if row is not None:
            row.update(signals)
            if answers is not None:
                row["samples/seconds"] = clock() - started
            row["health/warnings"] = crossed
            self._write_row(metrics, row)
            report.note(f"step {s}: eval loss {row['eval/loss']:.4f}, accuracy "
                        f"{row['eval/rewards/accuracies']:.3f}, margin {row['eval/rewards/margins']:.3f}")
        if answers is not None:
            self._write_samples(samples, s, answers)
        for w in self.health.check(signals, s):
            report.warning(w.kind, w.message)
        return crossed

    def _start_samples(self) -> ckpt.MetricsLog:
        """samples.jsonl and the starting model's answers (its step 0): a resumed run keeps its lines up to the
        checkpoint (if they answered the same prompts); otherwise the file starts afresh with answers made now."""
        from ..fileio import read_jsonl_tolerant

        path = self.run_dir / SAMPLES_FILE
        kept = [r for r in read_jsonl_tolerant(path) if r.get("step") == 0] if self.cfg.resume else []
        same = bool(kept) and [x.get("prompt") for x in kept[0].get("samples", [])] == self.watch.texts
        samples = ckpt.MetricsLog(path, keep_until=self.step if same else -1)
        if same:
            self._start = kept[0]["samples"]
        else:
            self._start = self.watch.answers(start=True)
            samples.write({"step": 0, "samples": self._start})
        self.report.samples(0, self._start)
        return samples

    def _write_samples(self, samples: ckpt.MetricsLog, step: int, answers: list[dict]) -> None:
        shown = [{**a, "base": b["answer"]} for a, b in zip(answers, self._start)]
        samples.write({"step": step, "samples": shown})
        self.report.samples(step, shown)

    def _collapse_text(self, s: int) -> str:
        kinds = ", ".join(sorted(self.health.warned)) or "a health warning"
        where = str(ckpt.step_dir(self.run_dir, s))
        if self._healthy:
            step, path = self._healthy
            last = f"the last healthy checkpoint is {path} (step {step}): use it with --adapter {path}"
        else:
            last = ("no earlier evaluation passed its checks, so the last healthy model is the starting one: "
                    "restart with gentler settings (see the warning), or with a smaller --eval-every, which checks "
                    "more often")
        return f"stopped at step {s} on a health warning ({kinds}; --stop-on-collapse); checkpoint {where}. {last}"

    def _throughput(self, tokens: int, dt: float) -> dict:
        """tokens/s summed over ranks and the largest per-rank memory peak (plus each rank's figures)."""
        per_rank = self.world.gather_floats([tokens / dt if dt > 0 else 0.0, mx.get_peak_memory() / 1e9])
        out = {"tokens_per_second": sum(r[0] for r in per_rank), "peak_memory_gb": max(r[1] for r in per_rank)}
        if self.world.distributed:
            out.update({"ranks": self.world.size, "rank_tokens_per_second": [r[0] for r in per_rank],
                        "rank_peak_memory_gb": [r[1] for r in per_rank]})
        return out

    def evaluate_valid(self) -> dict:
        return self.session.evaluate(self.session.valid_pairs, prefix="eval/")

    def save_checkpoint(self, log_window: dict | None = None):
        """Save a checkpoint (and RUN_DIR's adapter). `log_window`: the summed stats of the steps since the
        last metrics row, so a resume writes the next row as an uninterrupted run would."""
        if not self.world.is_main:  # rank 0 writes; the others hold the same state
            self._saved_step = self.step
            return
        cfg = self.cfg
        consumed, per_epoch = self.step * cfg.grad_accum, self.steps_per_epoch * cfg.grad_accum
        position = {"epoch": consumed // per_epoch, "batch_in_epoch": consumed % per_epoch,
                    "batches_per_epoch": batches_per_epoch(len(self.session.train_pairs), cfg.batch_size),
                    "seed": cfg.seed, "rng": "dropout RNG re-seeded from (seed, step) before each step"}
        if log_window:
            position["log_window"] = log_window
        path = ckpt.save(self.run_dir, self.step, self.model, self.optimizer, self.session.adapter_cfg, position)
        save_adapter(self.model, self.run_dir, self.session.adapter_cfg)
        self._saved_step = self.step
        self.report.log(f"checkpoint saved: {path}")
        self.report.checkpoint(self.step, str(path))


def _mean_row(rows: list[dict]) -> dict | None:
    """The mean of each number in `rows` (training rows of a health check's window); None for no rows."""
    if not rows:
        return None
    keys = [k for k, v in rows[-1].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}
