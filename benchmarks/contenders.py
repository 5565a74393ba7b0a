"""One benchmark contender per process: `python benchmarks/contenders.py SPEC.json`.

run.py writes SPEC.json ({"kind": ..., ...}) and reads back SPEC.json's "result" file. Each kind runs
in its own process so ru_maxrss is the peak resident memory of that contender alone.

Kinds: machine (matmul rates, host facts), mlx_dpo, mlx_lm_lora, trl, eval (held-out metrics of a
trained mlx-lm-format adapter, scored by one shared evaluator for every MLX contender).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
import traceback
from pathlib import Path

T_START = time.perf_counter()


def rss_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def step_summary(step_times: list[float], t0: float, t_end: float, setup_s: float, pairs_per_step: int,
                 n_steps: int) -> dict:
    """End-to-end and steady-state rates from the wall-clock end time of every optimizer step."""
    out = {"e2e_s": t_end - t0, "setup_s": setup_s, "steps": n_steps, "pairs_trained": n_steps * pairs_per_step,
           "e2e_pairs_per_s": n_steps * pairs_per_step / (t_end - t0)}
    if len(step_times) >= 2:
        out["first_step_s"] = step_times[0] - (t0 + setup_s)
        dt = step_times[-1] - step_times[0]
        out["steady_s_per_step"] = dt / (len(step_times) - 1)
        out["steady_pairs_per_s"] = (len(step_times) - 1) * pairs_per_step / dt
    return out


# ----------------------------------------------------------------------------- machine

def run_machine(spec: dict) -> dict:
    import mlx.core as mx
    import psutil

    def rate(fn, flops, reps=3):
        fn()
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        return flops * reps / (time.perf_counter() - t) / 1e9

    n = 2048
    a, b = mx.random.normal((n, n)), mx.random.normal((n, n))
    mx.eval(a, b)
    fp32 = rate(lambda: mx.eval(a @ b), 2 * n ** 3)
    # 4-bit affine quantized matmul (the QLoRA forward), x @ W.T with W (n, n), 512 tokens.
    wq, s, bq = mx.quantize(b, 64, 4)
    x = mx.random.normal((512, n))
    mx.eval(wq, s, bq, x)
    q4 = rate(lambda: mx.eval(mx.quantized_matmul(x, wq, s, bq, True, 64, 4)), 2 * 512 * n * n)
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    vers = {}
    for pkg in ("mlx", "mlx-lm", "mlx-lm-lora", "torch", "transformers", "trl", "peft"):
        try:
            from importlib.metadata import version
            vers[pkg] = version(pkg)
        except Exception:
            vers[pkg] = None
    return {"matmul_fp32_gflops": fp32, "qmm_q4_gflops": q4, "cpu": cpu, "cores": os.cpu_count(),
            "ram_gb": psutil.virtual_memory().total / 2 ** 30, "python": platform.python_version(),
            "platform": platform.platform(), "versions": vers,
            "blas": os.environ.get("LD_PRELOAD") or "bundled (mlx-cpu wheel)",
            "load_avg_before": os.getloadavg()}


# ----------------------------------------------------------------------------- mlx-dpo

def run_mlx_dpo(spec: dict) -> dict:
    import mlx.core as mx

    from mlx_dpo.train import checkpoint as ckpt
    from mlx_dpo.train import reference
    from mlx_dpo.config import TrainConfig
    from mlx_dpo.train.events import Reporter
    from mlx_dpo.train.trainer import Trainer

    hp = spec["hp"]
    step_times, ref_time = [], {}
    orig_write = ckpt.MetricsLog.write

    def write(self, row):
        if "loss" in row:
            step_times.append(time.perf_counter())
        return orig_write(self, row)

    ckpt.MetricsLog.write = write
    orig_score = reference.score_pairs

    def score(*a, **k):
        t = time.perf_counter()
        out = orig_score(*a, **k)
        ref_time["s"] = ref_time.get("s", 0.0) + time.perf_counter() - t
        return out

    reference.score_pairs = score
    cfg = TrainConfig(model=spec["model"], data=spec["train"], output=spec["run_dir"], cache_dir=spec["cache_dir"],
                      quantize=4 if spec["quantize"] else None, lora_rank=hp["rank"], lora_scale=hp["scale"],
                      lora_layers=hp["layers"], learning_rate=hp["lr"], iters=hp["iters"],
                      batch_size=hp["batch_size"], max_length=hp["max_length"], seed=hp["seed"], beta=hp["beta"],
                      lr_schedule="constant", max_grad_norm=None, weight_decay=0.0, save_every=10 ** 9,
                      log_every=1, **spec.get("extra", {})).validate()
    logs = []
    mx.reset_peak_memory()
    t0 = time.perf_counter()
    tr = Trainer(cfg, Reporter(logs.append)).setup()
    setup_s = time.perf_counter() - t0
    tr.train()
    t_end = time.perf_counter()
    out = step_summary(step_times, t0, t_end, setup_s, hp["batch_size"], tr.total_steps)
    out.update(reference_s=ref_time.get("s", 0.0), reference_cached=any("reused from cache" in l for l in logs),
               adapter_dir=spec["run_dir"], log_tail=logs[-4:])
    return out


def gemm_peak(shapes: list[tuple[int, int, int]], reps: int = 2) -> dict:
    """fp32 GFLOP/s of (m x k) @ (k x n) for the model's own GEMM shapes, measured here and now:
    the MFU denominator is the best of them (an MFU above 100% then means a failed measurement)."""
    import mlx.core as mx

    rates = {}
    for m, k, n in shapes:
        a, b = mx.random.normal((m, k)), mx.random.normal((k, n))
        mx.eval(a, b)
        mx.eval(a @ b)
        t = time.perf_counter()
        for _ in range(reps):
            mx.eval(a @ b)
        rates[f"{m}x{k}x{n}"] = 2 * m * k * n * reps / (time.perf_counter() - t) / 1e9
    return {"gemm_gflops": rates, "peak_gflops": max(rates.values())}


def run_mlx_dpo_phases(spec: dict) -> dict:
    """mlx-dpo with the wall time of every phase (load, tokenize, reference, first step, steady, save)."""
    import mlx.core as mx

    from mlx_dpo.config import TrainConfig
    from mlx_dpo.train.events import Reporter
    from mlx_dpo.train.trainer import Trainer

    peak = gemm_peak([tuple(x) for x in spec["gemm_shapes"]]) if spec.get("gemm_shapes") else {}
    marks, steps = {}, []

    class Phases(Reporter):
        def phase(self, phase, text):
            marks.setdefault(phase, time.perf_counter())

        def metrics(self, row):
            if "loss" in row:
                steps.append(time.perf_counter())

    hp = spec["hp"]
    cfg = TrainConfig(model=spec["model"], data=spec["train"], output=spec["run_dir"], cache_dir=spec["cache_dir"],
                      lora_rank=hp["rank"], lora_scale=hp["scale"], lora_layers=hp["layers"], learning_rate=hp["lr"],
                      iters=hp["iters"], batch_size=hp["batch_size"], max_length=hp["max_length"], seed=hp["seed"],
                      beta=hp["beta"], lr_schedule="constant", max_grad_norm=None, weight_decay=0.0,
                      save_every=10 ** 9, log_every=1, **spec.get("extra", {})).validate()
    logs = []
    mx.reset_peak_memory()
    t0 = time.perf_counter()
    tr = Trainer(cfg, Phases(logs.append)).setup()
    t_setup = time.perf_counter()
    tr.train()
    t_end = time.perf_counter()
    ph = {"load": marks["data"] - marks["load"],
          "tokenize": marks.get("reference", t_setup) - marks["data"],
          "reference": t_setup - marks["reference"] if "reference" in marks else 0.0,
          "first_step": steps[0] - marks["train"],
          "steady": steps[-1] - steps[0], "save": t_end - steps[-1]}
    return {"phases_s": ph, "e2e_s": t_end - t0, "steps": len(steps), "pairs": len(tr.session.train_pairs),
            "steady_s_per_step": ph["steady"] / max(len(steps) - 1, 1), "layout": tr.session.layout.name,
            "adapter_dir": spec["run_dir"],
            "reference_cached": any("reused from cache" in line for line in logs), **peak}


# ----------------------------------------------------------------------------- mlx-lm-lora

def _patch_device_info():
    """mlx-lm-lora's DPO trainer reads a Metal-only key; supply it on Linux (the only change we make)."""
    import mlx.core as mx
    import psutil

    orig = mx.device_info

    def device_info(*a, **k):
        info = dict(orig(*a, **k))
        info.setdefault("max_recommended_working_set_size", int(psutil.virtual_memory().total))
        return info

    mx.device_info = device_info


def run_mlx_lm_lora(spec: dict) -> dict:
    import types

    import mlx.core as mx
    from mlx_lm.tuner.callbacks import TrainingCallback

    _patch_device_info()
    from mlx_lm_lora import train as lt

    if spec.get("cpu_dequant"):  # the same CPU path as mlx-dpo: every quantized layer, policy and reference
        import mlx.nn as nn

        from mlx_dpo.model.cpu_matmul import CPUQuantizedEmbedding, CPUQuantizedLinear
        nn.QuantizedLinear.__call__ = CPUQuantizedLinear.__call__
        nn.QuantizedEmbedding.as_linear = CPUQuantizedEmbedding.as_linear

    hp = spec["hp"]
    step_times = []
    peak = gemm_peak([tuple(x) for x in spec["gemm_shapes"]]) if spec.get("gemm_shapes") else {}

    class CB(TrainingCallback):
        def on_train_loss_report(self, info):
            step_times.append(time.perf_counter())

        def on_val_loss_report(self, info):
            pass

    args = vars(lt.build_parser().parse_args([]))
    args.update(model=spec["model"], train=True, train_mode="dpo", train_type="lora", data=spec["data_dir"],
                batch_size=hp["batch_size"], iters=hp["iters"], learning_rate=hp["lr"],
                lora_parameters={"rank": hp["rank"], "dropout": 0.0, "scale": hp["scale"]},
                num_layers=hp["layers"], max_seq_length=hp["max_length"], seed=hp["seed"], beta=hp["beta"],
                dpo_cpo_loss_type="sigmoid", steps_per_report=1, steps_per_eval=10 ** 9, save_every=10 ** 9,
                val_batches=0, fuse=False, adapter_path=spec["run_dir"], optimizer="adamw",
                optimizer_config={"adamw": {"weight_decay": 0.0}}, load_in_4bits=bool(spec["quantize"]),
                lr_schedule=None, test=False)
    for k, v in lt.CONFIG_DEFAULTS.items():
        if args.get(k) is None:
            args[k] = v
    ns = types.SimpleNamespace(**args)
    mx.reset_peak_memory()
    t0 = time.perf_counter()
    # train_model() starts the clock of the training loop; everything before it is load + data setup.
    orig_train_dpo = lt.train_dpo
    marks = {}

    def train_dpo(*a, **k):
        marks["setup_end"] = time.perf_counter()
        return orig_train_dpo(*a, **k)

    lt.train_dpo = train_dpo
    lt.run(ns, training_callback=CB())
    t_end = time.perf_counter()
    out = step_summary(step_times, t0, t_end, marks["setup_end"] - t0, hp["batch_size"], hp["iters"])
    out.update(reference_s=None, adapter_dir=spec["run_dir"], **peak)
    return out


# ----------------------------------------------------------------------------- TRL (PyTorch CPU)

def run_trl(spec: dict) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    hp = spec["hp"]
    torch.manual_seed(hp["seed"])
    step_times = []

    class CB(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            step_times.append(time.perf_counter())

    def conv(path):
        rows = [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]
        return Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}],
                                   "chosen": [{"role": "assistant", "content": r["chosen"]}],
                                   "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in rows])

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(spec["model"])
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    args = DPOConfig(output_dir=spec["run_dir"], per_device_train_batch_size=hp["batch_size"],
                     per_device_eval_batch_size=hp["batch_size"], max_steps=hp["iters"], learning_rate=hp["lr"],
                     lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=0.0,
                     beta=hp["beta"], max_length=hp["max_length"], use_cpu=True, report_to="none",
                     save_strategy="no", logging_steps=1, seed=hp["seed"], bf16=False, fp16=False,
                     dataloader_num_workers=0, precompute_ref_log_probs=spec.get("precompute", False),
                     disable_tqdm=True)
    peft_cfg = LoraConfig(r=hp["rank"], lora_alpha=hp["scale"] * hp["rank"], lora_dropout=0.0,
                          target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=model, args=args, train_dataset=conv(spec["train"]),
                         eval_dataset=conv(spec["valid"]) if spec.get("valid") else None,
                         processing_class=tok, peft_config=peft_cfg, callbacks=[CB()])
    setup_s = time.perf_counter() - t0
    trainer.train()
    t_end = time.perf_counter()
    out = step_summary(step_times, t0, t_end, setup_s, hp["batch_size"], hp["iters"])
    out["rss_peak_train_bytes"] = rss_peak_bytes()
    if spec.get("valid"):
        ev = trainer.evaluate()
        out["heldout"] = {k.replace("eval_", ""): v for k, v in ev.items()
                          if k.startswith("eval_rewards/") or k == "eval_loss"}
    return out


# ----------------------------------------------------------------------------- shared evaluator

def run_eval(spec: dict) -> dict:
    """Held-out DPO metrics of an adapter on the base its contender trained on (same code for all MLX ones)."""
    import mlx.core as mx
    import mlx.nn as nn

    from mlx_dpo.model.cpu_matmul import use_dequantized_matmul
    from mlx_dpo.data.pairs import DataKeys
    from mlx_dpo.train.evaluation import metrics_from_logps
    from mlx_dpo.model.adapters import attach_adapter
    from mlx_dpo.model.load import load_base
    from mlx_dpo.data.prepare import prepare_strict
    from mlx_dpo.train.reference import score_pairs

    hp = spec["hp"]
    q = spec.get("quantize_group")  # on-the-fly 4-bit with this group size (None: use the folder as is)
    loaded = load_base(spec["model"], None, log=lambda *_: None)
    model = loaded.model
    if q:
        nn.quantize(model, group_size=q, bits=4)
        mx.eval(model.parameters())
        use_dequantized_matmul(model)  # the evaluator's speed only: same numbers as quantized_matmul
    pairs = prepare_strict(spec["valid"], DataKeys(), loaded.tokenizer, hp["max_length"], hp["max_length"] // 2,
                           lambda *_: None).pairs
    pad = loaded.tokenizer.pad_token_id or 0
    model.eval()
    ref = score_pairs(model, pairs, hp["batch_size"], 32, pad)
    adapter_dir, extra = _lora_only(spec["adapter_dir"])
    attach_adapter(model, adapter_dir)
    if extra:  # mlx-lm-lora (b) also trains the q/k/v biases of the layers it quantizes after adding LoRA
        model.load_weights(list(extra.items()), strict=False)
    model.eval()
    pol = score_pairs(model, pairs, hp["batch_size"], 32, pad)
    m = metrics_from_logps(pol, ref, loss="sigmoid", beta=hp["beta"], label_smoothing=0.0, simpo_gamma=0.5)
    return {"heldout": m, "pairs": len(pairs), "extra_trained_tensors": sorted(extra)}


def _lora_only(adapter_dir):
    """(folder with only LoRA factors, {other trained tensors}) of an mlx-lm-format adapter folder."""
    import shutil
    import tempfile

    import mlx.core as mx

    w = mx.load(str(Path(adapter_dir) / "adapters.safetensors"))
    extra = {k: v for k, v in w.items() if not k.endswith((".lora_a", ".lora_b"))}
    if not extra:
        return adapter_dir, {}
    tmp = Path(tempfile.mkdtemp(prefix="lora-only-"))
    shutil.copy(Path(adapter_dir) / "adapter_config.json", tmp / "adapter_config.json")
    mx.save_safetensors(str(tmp / "adapters.safetensors"), {k: v for k, v in w.items() if k not in extra})
    return str(tmp), extra


KINDS = {"machine": run_machine, "mlx_dpo": run_mlx_dpo, "mlx_dpo_phases": run_mlx_dpo_phases, "mlx_lm_lora": run_mlx_lm_lora, "trl": run_trl,
         "eval": run_eval}


def main():
    spec = json.loads(Path(sys.argv[1]).read_text())
    result = {"kind": spec["kind"], "ok": False}
    try:
        result.update(KINDS[spec["kind"]](spec))
        result["ok"] = True
    except BaseException as e:  # report, don't hide: the table shows the error
        result["error"] = f"{type(e).__name__}: {e}"
        result["traceback"] = traceback.format_exc()[-3000:]
    try:
        import mlx.core as mx
        result["mlx_peak_bytes"] = mx.get_peak_memory()
    except Exception:
        pass
    result["rss_peak_bytes"] = rss_peak_bytes()
    result["process_s"] = time.perf_counter() - T_START
    Path(spec["result"]).write_text(json.dumps(result, indent=1, default=str))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
