"""Does a run fit in memory: the memory model (model/memory.py) applied to a TrainConfig and its data's
token lengths, the budget it is compared with, and, when it does not fit, settings that do.

    budget        --memory (a Mac's RAM), else $MLX_DPO_MEMORY_BUDGET, else this machine's (memory.default_budget)
    data_lengths  (prompt, chosen, rejected) tokens per pair, rendered and truncated as training does, with the
                  tokenizer alone (no weights loaded)
    check         the estimate (Fit) and its suggestions: `mlx-dpo estimate`, the app (estimate_run: the Model
                  tab's estimate) and the trainer's refusal (train/session.py, shown by the Train tab) all
                  call it, so all say the same

A suggestion is a change of flags re-estimated with the same model: --grad-checkpoint, a smaller
--batch-size with --grad-accum raised to keep the pairs per optimizer step, a smaller --tokens-per-batch,
--quantize 4 for a float base, a smaller --max-length (with the pairs of the data it would cut), and a
combination of the milder ones when no single change is enough. Only changes whose own estimate fits
are offered.

A smaller --max-length is applied to the pairs' lengths as data/template.truncate_pair cuts the ids
(prompt from the left to its limit first, then both answers from the right), so the data need not be
tokenized again. No MLX is imported here (the memory model asks MLX only for the compute path).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..config import TrainConfig
from ..errors import DataError, Problem, UsageError
from ..model.memory import GB, MemoryEstimate, Shape, default_budget, default_path, estimate_for_config, human, \
    mac_budget

ENV = "MLX_DPO_MEMORY_BUDGET"  # a budget in bytes, or with a unit (16GB); for tests and for machines that misreport
MIN_LENGTH = 64                # --max-length / --tokens-per-batch suggestions stop here
UNITS = {"": None, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
         "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str, plain_unit: float) -> float | None:
    """Bytes of a size such as "16GB", "16G", "16 GiB", "512MB" (units are binary: a GB is 2**30 bytes, as
    Apple counts a Mac's memory); a plain number is in `plain_unit`. None if `text` is no size."""
    m = _SIZE.match(str(text))
    if not m or m.group(2).lower() not in UNITS:
        return None
    value = float(m.group(1)) * (UNITS[m.group(2).lower()] or plain_unit)
    return value if value > 0 else None


def budget(memory: str | None = None) -> tuple[float | None, str]:
    """(bytes a run may use, where that figure comes from); (None, "unknown") when the machine does not say.

    `memory`: a Mac's RAM (`--memory 16GB`, a plain number in GB): the budget is that less what macOS and
    an open app keep (memory.mac_budget)."""
    if memory is not None:
        ram = parse_size(memory, GB)
        if ram is None:
            raise UsageError(f"--memory {memory}: expected the RAM of a Mac as 16GB, 16G or 16 (GB)", key="memory")
        return max(0.0, mac_budget(ram)), f"a {ram / GB:g} GB Mac"
    env = os.environ.get(ENV, "").strip()
    if env:
        value = parse_size(env, 1)
        if value is None:
            raise UsageError(f"{ENV}={env!r}: expected a number of bytes or a size such as 16GB", key="memory")
        return value, ENV
    available, source = default_budget()
    return (None if available is None else max(0.0, available)), source  # a tiny machine's RAM less the reserve


# ---------------------------------------------------------------------------------------------- the data
def lengths_of(pairs) -> list[tuple[int, int, int]]:
    """(prompt, chosen, rejected) token counts of tokenized pairs (data/template.TokenizedPair)."""
    return [(len(p.prompt), len(p.chosen), len(p.rejected)) for p in pairs]


@dataclass
class DataLengths:
    lengths: list[tuple[int, int, int]]
    path: str
    invalid: int = 0     # rows left out (invalid); training refuses them unless --skip-invalid
    truncated: int = 0   # pairs cut to --max-length
    dropped: int = 0     # pairs left out by the length limits


def data_lengths(cfg: TrainConfig, progress=None) -> DataLengths:
    """The token lengths of `cfg.data` as training sees them: rendered with the model's chat template and
    truncated to cfg.max_length, with the tokenizer only (no weights). A file that cannot be read raises
    (UsageError, DataError), as training would; invalid rows are counted and left out."""
    from ..data.prepare import prepare
    from ..data.template import set_render_options
    from ..model.load import load_tokenizer_only

    tokenizer = load_tokenizer_only(cfg.model, cfg.trust_remote_code)
    set_render_options(tokenizer, date=cfg.template_date, template_kwargs=cfg.template_kwargs)
    prepared = prepare(cfg.data_source(), cfg.data_keys, tokenizer, cfg.max_length, cfg.prompt_limit, progress,
                       **cfg.data_options)
    if prepared.fatal:
        raise DataError(prepared.fatal)
    if not prepared.pairs:
        raise DataError([Problem(prepared.path, "no pairs to estimate with (every row is invalid or too long)")])
    render = prepared.render
    return DataLengths(lengths_of(prepared.pairs), prepared.path, invalid=len(prepared.errors),
                       truncated=render.truncated if render else 0, dropped=len(render.dropped) if render else 0)


def truncate_lengths(lengths, max_length: int, prompt_limit: int) -> tuple[list[tuple[int, int, int]], int, int]:
    """(the lengths at a smaller max_length, pairs cut, pairs dropped): data/template.truncate_pair's rule on
    counts (prompt from the left to `prompt_limit` first, then both answers to what is left)."""
    out, cut, dropped = [], 0, 0
    for p, c, r in lengths:
        if p + max(c, r) <= max_length:
            out.append((p, c, r))
            continue
        p = min(p, prompt_limit)
        room = max(0, max_length - p)
        c, r = min(c, room), min(r, room)
        if not c or not r:
            dropped += 1
            continue
        cut += 1
        out.append((p, c, r))
    return out, cut, dropped


# ---------------------------------------------------------------------------------------------- the check
@dataclass
class Suggestion:
    """A change of settings (TrainConfig keys -> values) and the estimate with it."""
    changes: dict
    estimate: MemoryEstimate
    cut: int | None = None      # with a smaller max_length: pairs of the data it cuts (None without data)
    dropped: int = 0

    @property
    def flags(self) -> list[str]:
        """The change as command-line flags to add."""
        out = []
        for key, value in self.changes.items():
            flag = "--" + key.replace("_", "-")
            out += [flag] if value is True else [flag, str(value)]
        return out

    def describe(self) -> str:
        text = f"{' '.join(self.flags)} (peak {human(self.estimate.peak)})"
        if self.cut:
            text += f", cuts {self.cut} pair(s)" + (f" and drops {self.dropped}" if self.dropped else "")
        return text

    def as_dict(self) -> dict:
        d = {"flags": self.flags, "settings": dict(self.changes), "peak_gb": round(self.estimate.peak / GB, 3),
             "peak_bytes": self.estimate.peak}
        if self.cut is not None:
            d["truncated_pairs"], d["dropped_pairs"] = self.cut, self.dropped
        return d


@dataclass
class Fit:
    """The estimate of a run's settings, where its lengths came from, and the settings that fit."""
    cfg: TrainConfig
    estimate: MemoryEstimate
    data: DataLengths | None = None
    processes: int = 1
    gpu: MemoryEstimate | None = None             # the same on a Mac's GPU (when this machine computes on the CPU)
    suggestions: list[Suggestion] = field(default_factory=list)
    data_problem: str | None = None               # why cfg.data's lengths could not be used (estimate_run)

    @property
    def fits(self) -> bool | None:
        return self.estimate.fits

    def as_dict(self) -> dict:
        d = self.estimate.as_dict()
        d["suggestions"] = [s.as_dict() for s in self.suggestions]
        d["pairs"] = len(self.data.lengths) if self.data else None
        d["data_problem"] = self.data_problem
        if self.gpu is not None:
            d["gpu_kernels_peak_gb"] = round(self.gpu.peak / GB, 3)
        if self.fits is not None:
            d["headroom_gb"] = round((self.estimate.available - self.estimate.peak) / GB, 3)
        return d

    def verdict(self) -> str:
        """"fits, 2.1 GB to spare" / "does not fit: 1.3 GB over" / "budget unknown"."""
        e = self.estimate
        if e.fits is None:
            return "budget unknown: this machine does not say how much memory it has (pass --memory)"
        if e.fits:
            return f"fits, {human(e.available - e.peak)} to spare"
        return f"does not fit: {human(e.peak - e.available)} over"

    def refusal(self) -> str:
        """The trainer's one-line refusal of a run that does not fit."""
        e = self.estimate
        text = (f"this run needs about {human(e.peak)} of memory at its peak, more than the {human(e.available)} "
                f"budget ({e.available_source}), so it would likely stop out of memory")
        if self.suggestions:
            text += "; settings that fit: " + "; ".join(s.describe() for s in self.suggestions[:3])
        else:
            text += "; none of the settings tried fits (a smaller or 4-bit model would)"
        text += ". `mlx-dpo estimate` with the same flags shows the figures; --force trains anyway"
        return text + ("" if e.available_source == ENV else f" (${ENV} sets the budget)")

    def lines(self) -> list[str]:
        """The report `mlx-dpo estimate` prints."""
        cfg, e, b = self.cfg, self.estimate, self.estimate.batch
        per = f" per process ({self.processes} processes)" if self.processes > 1 else ""
        layout = (f"packed, {cfg.tokens_per_batch} tokens per row" if b.packed else "padded") + (
            ", prompt shared" if b.shared_prompt else "")
        lora = f"{'DoRA' if cfg.dora else 'LoRA'} rank {cfg.lora_rank} on " + (
            "every block" if cfg.lora_layers < 0 else f"the last {cfg.lora_layers} blocks")
        out = [f"model: {cfg.model}" + (f" (quantized to {cfg.quantize} bits on load)" if cfg.quantize else ""),
               f"settings: batch {cfg.batch_size // self.processes}{per} x grad accum {cfg.grad_accum}, max length "
               f"{cfg.max_length}, {layout}, {lora}, grad checkpoint {'on' if cfg.grad_checkpoint else 'off'}"]
        if self.data is not None:
            d = self.data
            source = f"the data's token lengths: {len(d.lengths)} pairs of {d.path}"
            notes = [f"{d.truncated} cut to --max-length {cfg.max_length}"] if d.truncated else []
            notes += [f"{d.dropped} dropped by the length limits"] if d.dropped else []
            notes += [f"{d.invalid} invalid row(s) left out"] if d.invalid else []
            source += f" ({', '.join(notes)})" if notes else ""
        else:
            source = f"the worst case, every pair at --max-length {cfg.max_length} (no --data)"
        rows = f"{b.rows} rows" if b.rows > 1 else "1 row"
        out.append(f"worst micro-batch: {rows} of {b.tokens} tokens, {b.answers} answer tokens scored; from {source}")
        here = "this machine" if e.path == default_path() else "as asked"
        out.append(f"memory at the peak, {e.path} path ({here}):")
        terms = (("weights", e.weights), ("adapter + AdamW", e.adapter), ("activations", e.blocks),
                 ("workspace", e.workspace), ("LM head", e.head), ("training step", e.step),
                 ("reference pass", e.reference))
        out += [f"  {name:<16}{human(v):>10}" for name, v in terms]
        out.append(f"  {'peak':<16}{human(e.peak):>10}   (the larger of the step and the reference pass)")
        if self.gpu is not None:
            same = abs(self.gpu.peak - e.peak) < 1
            out.append("on a Mac's GPU: " + ("the same (no layer is dequantized on either path)" if same else
                       f"the quantized kernels read the packed weights, no dequantized copy of a layer: peak "
                       f"{human(self.gpu.peak)}"))
        if e.available is None:
            out.append(f"budget: unknown; {self.verdict()}")
            return out
        out.append(f"budget: {human(e.available)} ({e.available_source})")
        out.append(f"fits: yes, {human(e.available - e.peak)} to spare" if e.fits else
                   f"fits: NO, {human(e.peak - e.available)} over")
        if e.fits is False:
            if self.suggestions:
                out.append("settings that fit (add these flags):")
                width = max(len(" ".join(s.flags)) for s in self.suggestions)
                for s in self.suggestions:
                    extra = f", cuts {s.cut} of {len(self.data.lengths)} pairs" if s.cut else ""
                    extra += f", drops {s.dropped}" if s.dropped else ""
                    out.append(f"  {' '.join(s.flags):<{width}}  peak {human(s.estimate.peak)}{extra}")
            else:
                out.append(f"none of the settings tried fits (the weights alone take {human(e.weights)}): a smaller "
                           "model, or a 4-bit one, is needed")
        return out


def check(cfg: TrainConfig, data: DataLengths | None = None, *, memory: str | None = None,
          available: float | None = None, available_source: str | None = None, processes: int = 1,
          path: str | None = None, suggest: bool = True) -> Fit:
    """The estimate of `cfg` (its global --batch-size shared by `processes` data-parallel processes) on the
    data's lengths (None: the worst case at max_length), against `available` bytes, else the budget of
    `memory` / the environment / this machine; with the settings that fit when it does not."""
    if available is None:
        available, available_source = budget(memory)
    model, cfg = cfg.model, _as_trained(cfg)
    path = path or default_path()
    lengths = data.lengths if data else None

    def est(c: TrainConfig, ls=lengths, on=path) -> MemoryEstimate:
        local = dataclasses.replace(c, batch_size=max(1, c.batch_size // processes))
        return estimate_for_config(local, lengths=ls, available=available, available_source=available_source,
                                   path=on)

    shown = dataclasses.replace(cfg, model=model)  # the model as the user named it (a hub id, not its cache path)
    fit = Fit(shown, est(cfg), data, processes)
    if path == "cpu-dequantize":
        fit.gpu = est(cfg, on="gpu-kernels")
    if suggest and fit.fits is False:
        fit.suggestions = suggestions(cfg, lengths, est, processes)
    return fit


def estimate_run(cfg: TrainConfig, processes: int = 1, memory: str | None = None, progress=None) -> Fit:
    """check() on cfg.data's token lengths, for the app: a model that cannot be found or read raises
    (UsageError), data that cannot be read falls back to the worst case at max_length (`data_problem` says
    why), so the estimate of a model never fails for its data."""
    from ..model.load import resolve_model_path

    resolve_model_path(cfg.model)
    available, source = budget(memory)
    data, problem = None, None
    if cfg.data:
        try:
            data = data_lengths(cfg, progress)
        except UsageError as e:  # DataError too: a missing file, a schema it cannot read, no valid pair
            problem = str(e)
    fit = check(cfg, data, available=available, available_source=source, processes=processes)
    fit.data_problem = problem
    return fit


def _as_trained(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with the model resolved to its folder once, and a --init-adapter's own LoRA settings (training
    uses the adapter's rank, blocks and kind, not the flags')."""
    from ..model.load import resolve_model_path

    changes = {"model": str(resolve_model_path(cfg.model))}
    if cfg.init_adapter:
        try:
            saved = json.loads((Path(cfg.init_adapter) / "adapter_config.json").read_text(encoding="utf-8"))
            params = saved.get("lora_parameters") or {}
            changes.update(lora_rank=int(params.get("rank", cfg.lora_rank)),
                           lora_layers=int(saved.get("num_layers", cfg.lora_layers)),
                           dora=saved.get("fine_tune_type") == "dora")
        except (OSError, ValueError, TypeError, AttributeError):
            pass  # an adapter folder it cannot read is refused by training itself
    return dataclasses.replace(cfg, **changes)


def suggestions(cfg: TrainConfig, lengths, est, processes: int = 1) -> list[Suggestion]:
    """Settings that fit, mildest first: each single change (the largest value that fits), then a combination."""
    def tried(changes: dict) -> Suggestion:
        c = dataclasses.replace(cfg, **changes)
        ls, cut, dropped = lengths, None, 0
        if "max_length" in changes and lengths:
            ls, cut, dropped = truncate_lengths(lengths, c.max_length, c.prompt_limit)
            if not ls:
                ls = [(0, 0, 0)]  # nothing left: never offered (the estimate of an empty run is meaningless)
        return Suggestion(changes, est(c, ls), cut, dropped)

    def first_fit(options: list[dict], base: dict | None = None) -> Suggestion | None:
        for changes in options:
            s = tried({**(base or {}), **changes})
            if s.estimate.fits and not (s.cut is not None and s.cut + s.dropped >= len(lengths)):
                return s
        return None

    per_step = cfg.batch_size * cfg.grad_accum
    batches = [{"batch_size": b, "grad_accum": per_step // b} for b in range(cfg.batch_size - 1, 0, -1)
               if cfg.batch_size % b == 0 and b % processes == 0]
    tokens = [{"tokens_per_batch": t} for t in _halvings(cfg.tokens_per_batch or 0)] if cfg.tokens_per_batch else []
    longest = max((p + max(c, r) for p, c, r in lengths), default=cfg.max_length) if lengths else cfg.max_length
    lengths_tried = []
    for n in _halvings(cfg.max_length):
        if n >= longest:
            continue  # cuts nothing, changes nothing
        change = {"max_length": n}
        if cfg.max_prompt_length is not None and cfg.max_prompt_length >= n:
            change["max_prompt_length"] = n // 2
        lengths_tried.append(change)
    checkpoint = [] if cfg.grad_checkpoint else [{"grad_checkpoint": True}]
    quantize = [{"quantize": 4}] if not cfg.quantize and Shape.of(cfg.model).bits is None else []
    out = [s for s in (first_fit(checkpoint), first_fit(batches), first_fit(tokens), first_fit(quantize),
                       first_fit(lengths_tried)) if s is not None]
    if not out:
        # No single change is enough: the milder ones together (each kept only where it lowers the peak),
        # then the largest batch, token budget and length that fit on top of them.
        base: dict = {}

        def add_if_lower(change: dict) -> None:
            if tried({**base, **change}).estimate.peak < tried(base).estimate.peak:
                base.update(change)

        for group in (checkpoint, quantize):
            if group:
                add_if_lower(group[0])
        for options in ([{}], batches, tokens, lengths_tried):
            found = first_fit(options, base) if options else None
            if found is not None:
                return [found]
            if options and options != [{}]:
                add_if_lower(options[-1])
    return out


def _halvings(n: int) -> list[int]:
    out = []
    while n // 2 >= MIN_LENGTH:
        n //= 2
        out.append(n)
    return out
