"""A session: everything one run needs, built once — model, adapter, pairs, batch layout, loss, reference.

    tokenize the pairs (the tokenizer alone) -> check the run fits in memory (training; fit.py) -> load the
    base (quantize on request) -> add the adapter -> choose the layout -> score the reference log-probs with
    the model as it is now (cached on disk)

The data comes before the weights so that a run the memory estimate refuses (on the data's real
lengths) is refused in seconds, before gigabytes are read and long before the reference pass.

The order matters at one point: the reference is scored *after* the adapter is added and *before*
any update. A fresh LoRA adapter is the identity, so the model then is exactly the reference model
(base, or base + the init adapter) and needs no second copy (see reference.py).

`Session.for_training` serves `mlx-dpo train` (and the frontier and the app through it);
`Session.for_eval` serves `mlx-dpo eval`: the reference is the run's starting model and the trained
adapter is switched on only after it has been scored.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..config import TrainConfig
from ..data.prepare import prepare_strict
from ..data.template import TokenizedPair, set_render_options, uses_date
from ..errors import TrainingStopped, UsageError, first_line
from ..fileio import cache_root, write_failure
from ..model.adapters import AdapterSwitch, apply_lora, attach_adapter, new_adapter_config, read_adapter_config
from ..model.cpu_matmul import compute_tag
from ..model.load import load_base, load_tokenizer_only
from .control import OOM_ADVICE, is_out_of_memory
from .distributed import SINGLE, World
from .evaluation import evaluate
from .events import Reporter
from .layout import UNSHARED, Layout, choose_layout
from .losses import REGISTRY as LOSS_KINDS, Loss
from .reference import model_fingerprint, reference_logps
from .samples import KEEP_MESSAGES


@dataclass
class Session:
    cfg: TrainConfig
    model: nn.Module
    tokenizer: object
    model_path: Path
    adapter_cfg: dict
    loss: Loss
    layout: Layout
    train_pairs: list[TokenizedPair]
    valid_pairs: list[TokenizedPair] | None
    ref_train: dict | None = None       # reference log-probs (reference.REF_KEYS) of train_pairs
    ref_valid: dict | None = None
    world: World = field(default_factory=World)
    report: Reporter = field(default_factory=Reporter)
    switch: AdapterSwitch | None = None  # eval: the trained adapter (on) vs the starting one (off)
    data: list = field(default_factory=list)  # data.prepare.PreparedData of the train (and held-out) source
    train_labels: np.ndarray | None = None  # KTO: 1 desirable / 0 undesirable per example of train_pairs
    valid_labels: np.ndarray | None = None

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id or 0

    # ------------------------------------------------------------------ building
    @classmethod
    def for_training(cls, cfg: TrainConfig, report: Reporter | None = None, world: World = SINGLE) -> "Session":
        """Base + a new adapter (or `cfg.init_adapter`), train and held-out pairs, their reference."""
        report = report or Reporter()
        s = cls._load(cfg, report, world, valid_data=cfg.valid_data or (cfg.data if cfg.valid_split else None),
                      before_weights=lambda pairs: _refuse_if_too_big(cfg, pairs, report, world))
        s._check_unpaired_needs_kto()
        if s.loss.unpaired:
            s._as_kto_examples()
        mx.random.seed(cfg.seed)  # the LoRA A-factor init
        start = None  # with --reference base: the init adapter, switched off while the reference is scored
        if cfg.init_adapter and cfg.reference == "base":
            s.adapter_cfg = read_adapter_config(cfg.init_adapter)
            apply_lora(s.model, s.adapter_cfg)  # fresh layers are the identity: "off" is exactly the base
            start = AdapterSwitch.load(s.model, cfg.init_adapter)
            report.log(f"starting from adapter {cfg.init_adapter} (its LoRA settings are used); reference: the base")
        elif cfg.init_adapter:
            s.adapter_cfg = attach_adapter(s.model, cfg.init_adapter)
            report.log(f"starting from adapter {cfg.init_adapter} (its LoRA settings are used)")
        else:
            s.adapter_cfg = new_adapter_config(cfg, s.model)
            apply_lora(s.model, s.adapter_cfg)
        if cfg.grad_checkpoint:  # before choose_layout: prompt sharing refuses checkpointed blocks
            from .checkpointing import grad_checkpoint
            grad_checkpoint(s.model.layers[0])
        s.layout = choose_layout(s.model, [s.train_pairs, s.valid_pairs], cfg.share_prompt, cfg.tokens_per_batch)
        report.log(f"batch layout: {s.layout.name}")
        if start is not None:
            with start.disabled():
                s.ref_train, s.ref_valid = s._score_reference("train", "nothing was trained")
        else:
            s.ref_train, s.ref_valid = s._score_reference("train", "nothing was trained")
        if cfg.output:
            s.write_skipped(cfg.output)  # after the last step that can refuse the run
        return s

    @classmethod
    def for_eval(cls, cfg: TrainConfig, adapter_dir: str | None, report: Reporter | None = None) -> "Session":
        """Base (+ init adapter) as the reference for `cfg.data`; then the trained adapter switched on."""
        report = report or Reporter()
        if adapter_dir:
            read_adapter_config(adapter_dir)  # fail early, before any compute, on a bad adapter folder
        s = cls._load(cfg, report, SINGLE, valid_data=None)
        s._check_unpaired_needs_kto()
        if s.loss.unpaired and not s.unpaired_data:
            # Pairs: the DPO-style implicit-reward metrics, so KTO and DPO adapters compare on the same pairs.
            s.loss = Loss("sigmoid", cfg.beta)
            report.log("eval: paired data, so DPO metrics (implicit-reward accuracy) with the same beta")
        elif s.loss.unpaired:
            s._as_kto_examples()
        start = cfg.reference_adapter
        s.adapter_cfg = attach_adapter(s.model, start) if start else {}
        if adapter_dir:
            if not start:
                s.adapter_cfg = read_adapter_config(adapter_dir)
                apply_lora(s.model, s.adapter_cfg)
            # Loading checks the adapter fits this model before any compute or cache write; the
            # starting values (B = 0, or the init adapter) are back in place for the reference.
            s.switch = AdapterSwitch.load(s.model, adapter_dir)
            s.switch.set(False)
        s.layout = choose_layout(s.model, [s.train_pairs], cfg.share_prompt, cfg.tokens_per_batch)
        s.ref_train, _ = s._score_reference("eval", "nothing was evaluated")
        if s.switch is not None:
            s.switch.set(True)
        return s

    @classmethod
    def _load(cls, cfg: TrainConfig, report: Reporter, world: World, valid_data: str | None,
              before_weights=None) -> "Session":
        """The tokenizer and the pairs first, then `before_weights(train_pairs)` (the memory check), then the
        weights."""
        report.phase("data", f"reading {cfg.data}")
        tokenizer = load_tokenizer_only(cfg.model, cfg.trust_remote_code)
        _freeze_template_date(cfg, tokenizer, report, world)

        prepared = []

        def pairs(spec, keep_messages=0):
            def progress(done, total):
                report.task("tokenize", done, total, f"tokenizing {Path(spec.path).name}")

            prepared.append(prepare_strict(spec, cfg.data_keys, tokenizer, cfg.max_length, cfg.prompt_limit,
                                           report.log, progress, keep_messages=keep_messages, **cfg.data_options))
            return prepared[-1].pairs

        train = pairs(cfg.data_source())
        valid_spec = cfg.data_source(valid=True) if valid_data is not None else None
        # The held-out prompts answered at each evaluation (samples.py) need their messages, not only ids.
        valid = pairs(valid_spec, KEEP_MESSAGES if cfg.sample_prompts else 0) if valid_spec else None
        if before_weights is not None:
            before_weights(train)
        report.phase("load", f"loading {cfg.model}")
        loaded = load_base(cfg.model, cfg.quantize, cfg.trust_remote_code, log=report.log,
                           cpu_dequant=cfg.cpu_dequant_matmul, tokenizer=tokenizer)
        loss = Loss.from_config(cfg)
        for w in loss.ignored_settings():
            report.log(f"warning: {w}")
        s = cls(cfg, loaded.model, loaded.tokenizer, loaded.path, {}, loss, UNSHARED, train, valid, world=world,
                report=report)
        s.data = prepared
        return s

    @property
    def unpaired_data(self) -> bool:
        return any(p.load.formats.get("unpaired") for p in self.data)

    def _as_kto_examples(self) -> None:
        """KTO trains on examples: each pair gives a desirable and an undesirable one, an unpaired row one;
        each carries a mismatched completion for the KL reference point (data/unpaired.py)."""
        from ..data.unpaired import kto_examples
        from .kto import class_balance_warning

        cfg = self.cfg
        self.train_pairs, self.train_labels = kto_examples(self.train_pairs, self.data[0].load.pairs, cfg.seed,
                                                           cfg.max_length)
        if self.valid_pairs is not None:
            self.valid_pairs, self.valid_labels = kto_examples(self.valid_pairs, self.data[1].load.pairs, cfg.seed,
                                                               cfg.max_length)
        n_des = int(self.train_labels.sum())
        warning = class_balance_warning(n_des, len(self.train_labels) - n_des, cfg.desirable_weight,
                                        cfg.undesirable_weight)
        self.report.log(f"KTO: {len(self.train_pairs)} examples ({n_des} desirable)")
        if warning:
            self.report.log(f"warning: {warning}")

    def _check_unpaired_needs_kto(self) -> None:
        if self.unpaired_data and not self.loss.unpaired:
            unpaired = " or ".join(n for n, k in LOSS_KINDS.items() if k.unpaired)
            raise UsageError(f"{self.cfg.data}: unpaired rows (prompt, completion, label) train with --loss {unpaired}; "
                             f"--loss {self.loss.kind} needs pairs")

    def write_skipped(self, run_dir) -> None:
        """--skip-invalid: list the rows left out in RUN_DIR/skipped.jsonl (the main process only)."""
        from ..data.prepare import write_skipped

        if self.cfg.skip_invalid and self.world.is_main and any(p.errors for p in self.data):
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            n = write_skipped(Path(run_dir) / "skipped.jsonl", self.data)
            self.report.log(f"{n} skipped row(s) listed in {Path(run_dir) / 'skipped.jsonl'}")

    def _score_reference(self, label: str, nothing_done: str) -> tuple[dict | None, dict | None]:
        """Reference log-probs of the train (or eval) and held-out pairs; (None, None) for a reference-free
        loss (simpo, cpo, orpo), whose runs never score them."""
        if not self.loss.needs_reference:
            return None, None
        cfg = self.cfg
        cache = cache_root(cfg.cache_dir)
        key = model_fingerprint(self.model_path, cfg.quantize, cfg.reference_adapter, cache, compute_tag(self.model))
        if cfg.template_kwargs:  # the template's variables (--chat-template-kwargs) made these prompts
            key += "|template_kwargs=" + json.dumps(cfg.template_kwargs, sort_keys=True)
        self.report.phase("reference", f"scoring the reference log-probs ({len(self.train_pairs)} pairs)")
        try:
            def score(pairs, name):
                def progress(done, total):
                    self.report.task("reference", done, total, f"reference log-probs ({name})")

                return reference_logps(self.model, pairs, model_key=key, cache_dir=cache, batch_size=cfg.batch_size,
                                       pad_multiple=cfg.pad_multiple, pad_id=self.pad_id, log=self.report.log,
                                       label=name, world=self.world, layout=self.layout, progress=progress)

            ref = score(self.train_pairs, label)
            return ref, (score(self.valid_pairs, "valid") if self.valid_pairs else None)
        except OSError as e:
            raise TrainingStopped(f"could not write the reference cache in {cache} ({write_failure(e)}); "
                                  f"{nothing_done}. Free some space or pass --cache-dir.") from None
        except (MemoryError, RuntimeError) as e:
            if is_out_of_memory(e):
                raise TrainingStopped(f"out of memory while scoring the reference ({first_line(e)}); "
                                      f"{nothing_done}. {OOM_ADVICE}") from None
            raise

    # ------------------------------------------------------------------ using
    def evaluate(self, pairs: list[TokenizedPair], ref: dict | None = None, prefix: str = "",
                 show_progress: bool = False) -> dict:
        """DPO loss and TRL metrics of the model as it is now on `pairs` (dropout off).

        `ref` defaults to the session's reference of those pairs (train_pairs or valid_pairs)."""
        if ref is None:
            ref = self.ref_valid if pairs is self.valid_pairs else self.ref_train

        def progress(done, total):
            self.report.task("eval", done, total, f"evaluating {len(pairs)} pairs")

        labels = self.valid_labels if pairs is self.valid_pairs else self.train_labels
        return evaluate(self.model, pairs, ref, self.loss, batch_size=self.cfg.batch_size,
                        pad_multiple=self.cfg.pad_multiple, pad_id=self.pad_id, prefix=prefix, world=self.world,
                        layout=self.layout, progress=progress if show_progress else None, labels=labels)


def run_eval(cfg: TrainConfig, adapter_dir: str | None, report: Reporter | None = None) -> dict:
    """`mlx-dpo eval`: reference = base (+ init adapter), policy = that + the trained adapter."""
    session = Session.for_eval(cfg, adapter_dir, report)
    return session.evaluate(session.train_pairs, show_progress=True)


def _freeze_template_date(cfg: TrainConfig, tokenizer, report: Reporter, world: World) -> None:
    """Render with the date the run first started (saved in config.yaml), so resuming on another day
    gives the same prompts and the same reference; every rank uses rank 0's date."""
    if cfg.template_date is None:
        cfg.template_date = world.broadcast_text(datetime.date.today().isoformat(), "receiving the template date")
    set_render_options(tokenizer, date=cfg.template_date, template_kwargs=cfg.template_kwargs)
    if uses_date(tokenizer):
        report.log(f"the chat template prints today's date: rendering with {cfg.template_date} "
                   "(template_date, kept when the run is resumed)")


def _refuse_if_too_big(cfg: TrainConfig, pairs: list[TokenizedPair], report: Reporter, world: World) -> None:
    """Refuse (UsageError, key "force") a run whose memory estimate on these pairs exceeds the budget, naming
    the settings that fit, unless --force; never when the budget is unknown. Every rank agrees first (each
    compares its own machine's budget), so no rank loads the weights while another has stopped."""
    from .fit import DataLengths, check, lengths_of

    try:
        fit = check(cfg, DataLengths(lengths_of(pairs), str(cfg.data)), processes=world.size, suggest=False)
    except UsageError:
        raise  # a budget that cannot be read ($MLX_DPO_MEMORY_BUDGET)
    except Exception:  # an estimate only; a config.json it cannot read fails properly at load time
        return
    too_big = world.any(fit.fits is False, "agreeing whether the run fits in memory")
    if not too_big:
        return
    if cfg.force:
        if fit.fits is False:
            report.log(f"warning: {fit.refusal().partition('; ')[0]}; training anyway (--force)")
        return
    if fit.fits is not False:
        raise UsageError("another process's machine has too little memory for this run (its error names the "
                         "settings that fit); --force trains anyway", key="force")
    fit = check(cfg, fit.data, available=fit.estimate.available,
                available_source=fit.estimate.available_source, processes=world.size)
    raise UsageError(fit.refusal(), key="force", details={"memory": fit.as_dict()})
