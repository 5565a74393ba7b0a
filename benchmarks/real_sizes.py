#!/usr/bin/env python
"""Real sizes (issue 29): DPO steps on 4-bit models with the real shapes of Llama 3.2 1B/3B and 3.1 8B.

    python benchmarks/real_sizes.py --openblas --points 1b:1k,1b:1k:gc,1b:2k,1b:2k:gc
    python benchmarks/real_sizes.py --openblas --points 8b:1k:gc
    python benchmarks/real_sizes.py --openblas --probe            # small-layer probes (memory model terms)

Each model is written once under benchmarks/.work/real-sizes/ (or --root): config.json with the real
shapes, Llama 3's 128,256-token tokenizer and chat template (llama.cpp's vocabulary file, through the
test suite's real-material cache), and random 4-bit weights (group 64, bfloat16 scales and biases) written
one tensor at a time, so building an 8B model needs about one shard of memory. Each point trains in its own
process (`mlx-dpo`'s Trainer, the product path): batch 1, one pair of the given length, a cold reference
cache. Recorded per point: MLX peak of the set-up (load + reference pass) and of the training steps,
process peak RSS, time of the reference pass and of each step, the reference cache on disk, and
`mlx_dpo.model.memory.estimate` for the same settings and data (the memory model under test).
Results go to benchmarks/results-real-sizes.json (merged by point name).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

OPENBLAS = "/usr/lib/x86_64-linux-gnu/libopenblas.so.0"
RESULTS = HERE / "results-real-sizes.json"

LLAMA3 = dict(model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=128256, rms_norm_eps=1e-5,
              hidden_act="silu", attention_bias=False, mlp_bias=False, max_position_embeddings=131072,
              rope_theta=500000.0, bos_token_id=128000, eos_token_id=[128001, 128008, 128009],
              torch_dtype="bfloat16", quantization={"group_size": 64, "bits": 4})
ROPE = dict(high_freq_factor=4.0, low_freq_factor=1.0, original_max_position_embeddings=8192, rope_type="llama3")
SHAPES = {
    "1b": dict(LLAMA3, hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
               head_dim=64, intermediate_size=8192, tie_word_embeddings=True, rope_scaling=dict(ROPE, factor=32.0)),
    "3b": dict(LLAMA3, hidden_size=3072, num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8,
               head_dim=128, intermediate_size=8192, tie_word_embeddings=True, rope_scaling=dict(ROPE, factor=32.0)),
    "8b": dict(LLAMA3, hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
               head_dim=128, intermediate_size=14336, tie_word_embeddings=False, rope_scaling=dict(ROPE, factor=8.0)),
}
NAMES = {"1b": "Llama-3.2-1B", "3b": "Llama-3.2-3B", "8b": "Llama-3.1-8B"}
# Pair lengths: prompt and answer tokens of the rendered pair (chat template included), so each of the two
# sequences (prompt + answer) is about max_length tokens.
LENGTHS = {"1k": dict(prompt=256, answer=740, max_length=1024), "2k": dict(prompt=512, answer=1500, max_length=2048),
           "512": dict(prompt=128, answer=360, max_length=512)}
GROUP, BITS = 64, 4
SCALE = 0.02 / 4.61  # uniform 4-bit codes times this scale: weights of std ~0.02, mean 0 (bias -7.5 scales)


def reexec_with_openblas() -> None:
    if os.environ.get("LD_PRELOAD") != OPENBLAS:
        if not Path(OPENBLAS).exists():
            sys.exit(f"{OPENBLAS} missing: apt-get install -y libopenblas0-pthread")
        sys.exit(subprocess.call([sys.executable, *sys.argv], env=dict(os.environ, LD_PRELOAD=OPENBLAS)))


# ----------------------------------------------------------------------------- the model folders

def tensors_of(cfg: dict):
    """(name, shape of the float weight, quantized?) for every tensor of a Llama checkpoint."""
    h, inter, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    q, kv = cfg["num_attention_heads"] * cfg["head_dim"], cfg["num_key_value_heads"] * cfg["head_dim"]
    yield "model.embed_tokens", (cfg["vocab_size"], h), True
    for i in range(L):
        p = f"model.layers.{i}"
        for name, shape in (("self_attn.q_proj", (q, h)), ("self_attn.k_proj", (kv, h)), ("self_attn.v_proj", (kv, h)),
                            ("self_attn.o_proj", (h, q)), ("mlp.gate_proj", (inter, h)), ("mlp.up_proj", (inter, h)),
                            ("mlp.down_proj", (h, inter))):
            yield f"{p}.{name}", shape, True
        yield f"{p}.input_layernorm", (h,), False
        yield f"{p}.post_attention_layernorm", (h,), False
    yield "model.norm", (h,), False
    if not cfg["tie_word_embeddings"]:
        yield "lm_head", (cfg["vocab_size"], h), True


def build_model(root: Path, size: str, layers: int | None = None) -> Path:
    """The model folder (built once; a `.complete` marker says it is whole)."""
    import mlx.core as mx
    from real_material import TOKENIZER_FILES, tokenizer_dir

    cfg = dict(SHAPES[size])
    if layers is not None:
        cfg["num_hidden_layers"] = layers
    path = root / (f"{size}-q4" if layers is None else f"{size}-{layers}l-q4")
    if (path / ".complete").exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    shard, shard_bytes, n_shard, index = {}, 0, 0, {}

    def flush():
        nonlocal shard, shard_bytes, n_shard
        if shard:
            n_shard += 1
            name = f"model-{n_shard:05d}.safetensors"
            mx.save_safetensors(str(path / name), shard, metadata={"format": "mlx"})
            index.update({k: name for k in shard})
            shard, shard_bytes = {}, 0

    for name, shape, quantized in tensors_of(cfg):
        if quantized:
            out, inp = shape
            codes = rng.integers(0, 2 ** 32, size=(out, inp * BITS // 32), dtype=np.uint32)
            shard[f"{name}.weight"] = mx.array(codes)
            shard[f"{name}.scales"] = mx.full((out, inp // GROUP), SCALE, dtype=mx.bfloat16)
            shard[f"{name}.biases"] = mx.full((out, inp // GROUP), -7.5 * SCALE, dtype=mx.bfloat16)
            shard_bytes += codes.nbytes + 2 * out * (inp // GROUP) * 2
        else:
            shard[f"{name}.weight"] = mx.ones(shape, dtype=mx.bfloat16)
        if shard_bytes > 2 << 30:
            flush()
    flush()
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}, indent=1))
    (path / "config.json").write_text(json.dumps(cfg, indent=2))
    (path / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "do_sample": False}, indent=2))
    src = tokenizer_dir("llama-3.1")  # Llama 3's 128k vocabulary (llama.cpp's ggml-vocab-llama-bpe) + template
    for f in TOKENIZER_FILES:
        if (src / f).exists():
            shutil.copy(src / f, path / f)
    (path / ".complete").write_text("")
    return path


def make_data(model: Path, length: str, out: Path, n_pairs: int = 1) -> Path:
    """n pairs whose rendered prompt/answers are LENGTHS[length] tokens (workload's lexicon, cut by the tokenizer)."""
    import workload

    spec = LENGTHS[length]
    # The template adds ~30 tokens to the prompt and 1-2 to each answer: aim the texts below the targets.
    P = np.full(n_pairs, spec["prompt"] - 40)
    A = np.full(n_pairs, spec["answer"] - 4)
    rows = workload._pairs_of_lengths(model, np.random.default_rng(7), P, A, A)
    workload.write_jsonl(rows, out)
    return out


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


# ----------------------------------------------------------------------------- one point (own process)

def run_point(spec: dict) -> dict:
    import mlx.core as mx

    from mlx_dpo.config import TrainConfig
    from mlx_dpo.model.memory import estimate_for_config
    from mlx_dpo.train.events import Reporter
    from mlx_dpo.train.trainer import Trainer

    marks, steps = {}, []

    class Phases(Reporter):
        def phase(self, phase, text):
            marks.setdefault(phase, time.perf_counter())
            Path(spec["phase_file"]).write_text(phase)  # for the parent's memory watchdog

        def metrics(self, row):
            if "loss" in row:
                steps.append((time.perf_counter(), float(row["loss"]), mx.get_peak_memory()))

    cfg = TrainConfig(model=spec["model"], data=spec["data"], output=spec["run_dir"], cache_dir=spec["cache_dir"],
                      iters=spec["iters"], batch_size=1, max_length=spec["max_length"], seed=0,
                      grad_checkpoint=spec["grad_checkpoint"], save_every=10 ** 9, log_every=1, sample_prompts=0,
                      **spec.get("extra", {})).validate()
    logs: list[str] = []
    mx.reset_peak_memory()
    t0 = time.perf_counter()
    tr = Trainer(cfg, Phases(logs.append)).setup()
    t_setup = time.perf_counter()
    setup_peak = mx.get_peak_memory()
    rss_setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    mx.reset_peak_memory()
    tr.train()
    t_end = time.perf_counter()
    pairs = tr.session.train_pairs
    lengths = [(len(p.prompt), len(p.chosen), len(p.rejected)) for p in pairs]
    est = estimate_for_config(cfg, lengths=lengths)
    times = [marks["train"]] + [t for t, _, _ in steps]
    return {
        "setup_peak_bytes": setup_peak, "train_peak_bytes": mx.get_peak_memory(),
        "rss_setup_bytes": rss_setup, "rss_peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "load_s": marks["data"] - marks["load"],
        "reference_s": t_setup - marks["reference"] if "reference" in marks else None,
        "step_s": [b - a for a, b in zip(times, times[1:])], "losses": [x for _, x, _ in steps],
        "e2e_s": t_end - t0, "layout": tr.session.layout.name, "lengths": lengths,
        "reference_cache_bytes": dir_bytes(Path(spec["cache_dir"]) / "reference"),
        "estimate": est.as_dict(), "reference_cached": any("reused from cache" in line for line in logs),
    }


# The machine has 24 GB: a point past this is stopped (and reported with its phase) before the kernel's
# OOM killer takes it without a word.
RSS_LIMIT = 21e9


def watched(cmd: list, phase_file: Path):
    """Run `cmd`, sampling its resident memory every second; stop it above RSS_LIMIT."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    watch = {"max_rss": 0, "phase": None, "killed": False}
    import threading

    def sample():
        while proc.poll() is None:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) * 1024
            except (OSError, StopIteration, ValueError):
                rss = 0
            watch["max_rss"] = max(watch["max_rss"], rss)
            if phase_file.exists():
                watch["phase"] = phase_file.read_text()
            if rss > RSS_LIMIT:
                watch["killed"] = True
                proc.kill()
            time.sleep(1)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    t.join(timeout=5)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), watch


def point(root: Path, name: str, iters: int, extra: dict | None = None, keep_cache: bool = False) -> dict:
    """`size:length[:gc]` trained in a child process; its figures, plus the load average around it."""
    size, length, *flags = name.split(":")
    layers = next((int(f[:-1]) for f in flags if f.endswith("l")), None)
    name = ":".join(x for x in name.split(":") if x[:1] != "i")  # the step count is not part of the point
    model = build_model(root, size, layers)
    work = root / "runs" / name.replace(":", "-")
    shutil.rmtree(work, ignore_errors=True)
    data = make_data(model, length, work / "pairs.jsonl")
    spec = dict(model=str(model), data=str(data), run_dir=str(work / "run"), cache_dir=str(work / "cache"),
                iters=iters, max_length=LENGTHS[length]["max_length"], grad_checkpoint="gc" in flags,
                extra=extra or {})
    spec["phase_file"] = str(work / "phase")
    load0 = os.getloadavg()[0]
    t0 = time.time()
    r, watch = watched([sys.executable, __file__, "--child", json.dumps(spec)], Path(spec["phase_file"]))
    out = {"point": name, "model": NAMES[size] + ("" if layers is None else f" ({layers} blocks)"),
           "size": size, "length": length, "grad_checkpoint": "gc" in flags, "layers": layers,
           "iters": iters, "load_before": load0, "load_after": os.getloadavg()[0], "wall_s": time.time() - t0,
           "date": time.strftime("%Y-%m-%d %H:%M"), "blas": os.environ.get("LD_PRELOAD") or "bundled"}
    out["rss_sampled_max_bytes"] = watch["max_rss"]
    if r.returncode:
        out["error"] = (r.stderr or r.stdout).strip().splitlines()[-5:] + [
            f"exit status {r.returncode}; RSS sampled up to {watch['max_rss'] / 1e9:.1f} GB, last phase "
            f"{watch['phase']!r}" + (f"; stopped by the watchdog above {RSS_LIMIT / 1e9:.0f} GB" if watch["killed"] else "")]
    else:
        out.update(json.loads(r.stdout.strip().splitlines()[-1]))
    if not keep_cache:
        shutil.rmtree(work, ignore_errors=True)
    return out


def peer_point(root: Path, name: str, iters: int) -> dict:
    """mlx-lm-lora's DPO (a second model copy as the reference, full-vocabulary logits) on the same model,
    pair and CPU dequantize path (contenders.py, `cpu_dequant`), batch 1."""
    from run import run_child

    size, length, *flags = name.split(":")
    layers = next((int(f[:-1]) for f in flags if f.endswith("l")), None)
    model = build_model(root, size, layers)
    work = root / "runs" / name.replace(":", "-")
    shutil.rmtree(work, ignore_errors=True)
    data = make_data(model, length, work / "data" / "train.jsonl")
    shutil.copy(data, work / "data" / "valid.jsonl")
    hp = dict(rank=8, scale=20.0, lr=5e-5, beta=0.1, max_length=LENGTHS[length]["max_length"], seed=0,
              layers=layers or SHAPES[size]["num_hidden_layers"], batch_size=1, iters=iters)
    spec = dict(kind="mlx_lm_lora", model=str(model), quantize=False, hp=hp, data_dir=str(work / "data"),
                run_dir=str(work / "run"), cpu_dequant=True)
    load0 = os.getloadavg()[0]
    res = run_child(spec, dict(os.environ, HF_HUB_OFFLINE="1"), work, "peer", timeout=3600)
    out = {"point": name, "model": NAMES[size] + ("" if layers is None else f" ({layers} blocks)"), "size": size,
           "length": length, "grad_checkpoint": False, "layers": layers, "iters": iters, "peer": "mlx-lm-lora", "load_before": load0,
           "load_after": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M"),
           "blas": os.environ.get("LD_PRELOAD") or "bundled", "wall_s": res.get("wall_s")}
    if not res.get("ok"):
        out["error"] = [str(res.get("error"))[:500]]
    else:
        out.update(train_peak_bytes=res.get("mlx_peak_bytes"), setup_peak_bytes=None,
                   rss_peak_bytes=res.get("rss_peak_bytes"), step_s=[x for x in (res.get("first_step_s"), res.get("steady_s_per_step")) if x is not None], reference_s=None,
                   summary={k: v for k, v in res.items() if k.endswith("_s") or k.endswith("_per_step")})
    return out


def save(result: dict) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[result["point"]] = result
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, RESULTS)


# Real checkpoints' shapes for the "What fits on your Mac" table (config.json fields the estimate reads).
TABLE_MODELS = {
    "Qwen2.5-0.5B": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True),
    "Llama-3.2-1B": SHAPES["1b"], "Llama-3.2-3B": SHAPES["3b"],
    "Qwen2.5-7B": dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                       intermediate_size=18944, vocab_size=152064, tie_word_embeddings=False),
    "Llama-3.1-8B": SHAPES["8b"],
    "Qwen2.5-14B": dict(hidden_size=5120, num_hidden_layers=48, num_attention_heads=40, num_key_value_heads=8,
                        intermediate_size=13824, vocab_size=152064, tie_word_embeddings=False),
}
MAC_MEMORY = (8, 16, 24, 36, 48, 64)
TABLE_LENGTHS = {"512": 512, "1k": 1024, "2k": 2048, "4k": 4096}


def fits_table(path: str = "gpu-kernels") -> str:
    """Markdown: model x pair length x Mac memory, from the memory model (4-bit, batch 1, LoRA rank 8 on
    every layer, packing on; pairs of a 1/4 prompt and two answers, each sequence the given length)."""
    import tempfile

    from mlx_dpo.model.memory import GB, estimate, mac_budget

    measured = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    done = {(NAMES[r["size"]], r["length"], r["grad_checkpoint"]) for r in measured.values()
            if not r.get("layers") and "error" not in r}
    lines = ["| model | pair | peak GB (no checkpointing / --grad-checkpoint) | "
             + " | ".join(f"{m} GB" for m in MAC_MEMORY) + " |",
             "|---|---|---|" + "---:|" * len(MAC_MEMORY)]
    with tempfile.TemporaryDirectory() as tmp:
        for name, shape in TABLE_MODELS.items():
            folder = Path(tmp) / name
            folder.mkdir()
            (folder / "config.json").write_text(json.dumps({**shape, "quantization": {"group_size": 64, "bits": 4}}))
            for label, n in TABLE_LENGTHS.items():
                p = n // 4
                lengths = [(p, n - p, n - p)]
                plain, gc = (estimate(folder, batch_size=1, max_length=n, lengths=lengths, grad_checkpoint=g,
                                      path=path, available=0).peak for g in (False, True))
                marks = [("*" if (name, label, g) in done else "") for g in (False, True)]
                cells = []
                for mem in MAC_MEMORY:
                    budget = mac_budget(mem * GB)
                    cells.append("yes" if plain <= budget else "with --grad-checkpoint" if gc <= budget else "no")
                lines.append(f"| {name} | {label} | {plain / GB:.1f}{marks[0]} / {gc / GB:.1f}{marks[1]} | "
                             + " | ".join(cells) + " |")
    return "\n".join(lines)


def nonnegative_lstsq(A, b):
    """Least squares with coefficients >= 0: drop the most negative coefficient and solve again."""
    free = list(range(A.shape[1]))
    while True:
        x = np.zeros(A.shape[1])
        x[free] = np.linalg.lstsq(A[:, free], b, rcond=None)[0]
        if (x[free] >= 0).all():
            return x
        free.remove(free[int(np.argmin(x[free]))])


def fit() -> str:
    """Least-squares fit (relative error) of memory.py's five activation coefficients on the
    recorded training-step peaks; prints them and each point's error with the fitted and the current values."""
    from mlx_dpo.model import memory as M

    rows, points, ref_rows, ref_rhs = [], [], [], []
    for r in json.loads(RESULTS.read_text()).values():
        if "error" in r or r.get("peer") or not r.get("estimate"):
            continue
        cfg = dict(SHAPES[r["size"]], num_hidden_layers=r.get("layers") or SHAPES[r["size"]]["num_hidden_layers"])
        shape = M.Shape(hidden=cfg["hidden_size"], layers=cfg["num_hidden_layers"], inter=cfg["intermediate_size"],
                        vocab=cfg["vocab_size"], heads=cfg["num_attention_heads"], kv_heads=cfg["num_key_value_heads"],
                        head_dim=cfg["head_dim"], tied=cfg["tie_word_embeddings"], bits=BITS, group=GROUP)
        lengths = [tuple(x) for x in r["lengths"]]
        ml = LENGTHS[r["length"]]["max_length"]
        b = M.worst_batch(lengths, batch_size=1, max_length=ml, grad_checkpoint=r["grad_checkpoint"])
        b_ref = M.worst_batch(lengths, batch_size=1, max_length=ml, grad_checkpoint=r["grad_checkpoint"],
                              reference=True)
        f = M.activation_features(shape, b, r["grad_checkpoint"])
        f_ref = M.activation_features(shape, b_ref, False)
        known = (shape.weight_bytes() + r["estimate"]["terms_bytes"]["adapter"] + f["checkpoints"]
                 + max(o * i for o, i in shape.linear_shapes()) * (M.FP32 + M.HALF) + M.head_bytes(shape, b.answers))
        y = r["train_peak_bytes"]
        ref_rows.append([f_ref["work_width"] / r["setup_peak_bytes"], f_ref["work_attn"] / r["setup_peak_bytes"]])
        ref_rhs.append(1 - (shape.weight_bytes() + M.head_bytes(shape, b_ref.answers)
                            + max(o * i for o, i in shape.linear_shapes()) * (M.FP32 + M.HALF)) / r["setup_peak_bytes"])
        # No constant term: a fixed overhead would swamp small models' estimates (none is needed).
        rows.append([f["saved_width"] / y, f["saved_attn"] / y, f["work_width"] / y, f["work_attn"] / y,
                     f["checkpoint_hidden"] / y])
        points.append((r["point"], y, known, current_estimate(r)))
    A = np.array(rows)
    rhs = np.array([(y - k) / y for _, y, k, _ in points])
    coef = nonnegative_lstsq(A, rhs)
    out = ["SAVED_WIDTH, SAVED_ATTN = %.2f, %.3f" % tuple(coef[:2]),
           "WORK_WIDTH, WORK_ATTN = %.2f, %.3f" % tuple(coef[2:4]), "CHECKPOINT_HIDDEN = %.2f" % coef[4]]
    ref = nonnegative_lstsq(np.array(ref_rows), np.array(ref_rhs))
    out.append("REF_WIDTH, REF_ATTN = %.2f, %.3f  (reference pass; worst error %+.1f%%)" % (
        *ref, 100 * float(np.abs(np.array(ref_rows) @ ref - np.array(ref_rhs)).max())))
    for (name, y, k, current), row in zip(points, A):
        fitted = k + float(row @ coef) * y
        out.append(f"{name:18s} step measured {y / M.GB:6.2f}  fitted {fitted / y - 1:+6.1%}  "
                   f"memory.py now (peak vs max of both) {current / y - 1:+6.1%}")
    return "\n".join(out)


def current_estimate(r: dict) -> float:
    """The memory model's peak (bytes) for a recorded point, as the model is now (not as when it ran)."""
    import tempfile

    from mlx_dpo.model.memory import estimate

    cfg = dict(SHAPES[r["size"]], num_hidden_layers=r.get("layers") or SHAPES[r["size"]]["num_hidden_layers"])
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(cfg))
        return estimate(tmp, batch_size=1, max_length=LENGTHS[r["length"]]["max_length"],
                        grad_checkpoint=r["grad_checkpoint"], lengths=[tuple(x) for x in r["lengths"]],
                        path="cpu-dequantize", available=0).peak


def report() -> str:
    """Markdown table of every recorded point (BENCHMARKS.md "Real sizes")."""
    from mlx_dpo.model.memory import GB

    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    lines = ["| point | model | rows × tokens | checkpointing | MLX peak GB (reference pass / step) | RSS GB | "
             "estimate GB | error | reference s | s per step | steps/s | reference cache | load |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    order = {"1b": 0, "3b": 1, "8b": 2}
    for r in sorted(data.values(), key=lambda r: (r.get("layers") is None, order[r["size"]], r.get("layers") or 0,
                                                  r["length"], r["grad_checkpoint"], "peer" in r)):
        who = r["model"] + (" — mlx-lm-lora" if r.get("peer") else "")
        if "error" in r:
            lines.append(f"| {r['point']} | {who} | | {'yes' if r['grad_checkpoint'] else 'no'} | failed: "
                         f"{' '.join(r['error'])[-160:]} | | | | | | | | |")
            continue
        setup, train = r.get("setup_peak_bytes"), r["train_peak_bytes"]
        measured = max(x for x in (setup, train) if x is not None)
        peak = current_estimate(r) if r.get("lengths") else None
        steps = r.get("step_s") or []
        from mlx_dpo.model.memory import worst_batch
        b = worst_batch([tuple(x) for x in r["lengths"]], batch_size=1, max_length=LENGTHS[r["length"]]["max_length"],
                        grad_checkpoint=r["grad_checkpoint"]) if r.get("lengths") else None
        cells = [r["point"], who, f"{b.rows} × {b.tokens}" if b else "",
                 "yes" if r["grad_checkpoint"] else "no",
                 ("" if setup is None else f"{setup / GB:.2f} / ") + f"{train / GB:.2f}",
                 f"{r['rss_peak_bytes'] / GB:.2f}", "" if peak is None else f"{peak / GB:.2f}",
                 "" if peak is None else f"{peak / measured - 1:+.1%}",
                 "" if r.get("reference_s") is None else f"{r['reference_s']:.0f}",
                 " / ".join(f"{x:.0f}" for x in steps), f"{1 / steps[-1]:.4f}" if steps else "",
                 "" if r.get("reference_cache_bytes") is None else f"{r['reference_cache_bytes']} B",
                 f"{r['load_before']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gb(n) -> str:
    return "—" if n is None else f"{n / 2 ** 30:.2f}"  # GiB, as memory.py and the report


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--openblas", action="store_true", help=f"LD_PRELOAD={OPENBLAS} (every point)")
    ap.add_argument("--points", default="1b:1k,1b:1k:gc",
                    help="comma-separated size:length[:gc][:NNl (blocks)][:iN (steps, default --iters)]")
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--root", default=str(HERE / ".work" / "real-sizes"))
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--table", action="store_true", help="print README's 'What fits on your Mac' table")
    ap.add_argument("--report", action="store_true", help="print BENCHMARKS.md's table of the recorded points")
    ap.add_argument("--fit", action="store_true", help="fit memory.py's activation coefficients to the points")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(run_point(json.loads(a.child))))
        return
    if a.table:
        print(fits_table())
        return
    if a.report:
        print(report())
        return
    if a.fit:
        print(fit())
        return
    if a.openblas:
        reexec_with_openblas()
    root = Path(a.root)
    for name in a.points.split(","):
        if a.build_only:
            size, _, *flags = name.split(":")
            print(build_model(root, size, next((int(f[:-1]) for f in flags if f.endswith("l")), None)))
            continue
        iters = next((int(f[1:]) for f in name.split(":")[2:] if f[:1] == "i"), a.iters)
        if ":peer" in name:
            r = peer_point(root, ":".join(x for x in name.split(":") if x[:1] != "i"), iters)
            save(r)
            print(f"{name}: {r.get('error') or r}", flush=True)
            continue
        r = point(root, name, iters)
        save(r)
        if "error" in r:
            print(f"{name}: FAILED {r['error']}", flush=True)
            continue
        est = r["estimate"]["peak_bytes"]
        measured = max(r["setup_peak_bytes"], r["train_peak_bytes"])
        print(f"{name}: MLX peak setup {gb(r['setup_peak_bytes'])} train {gb(r['train_peak_bytes'])} GB, "
              f"RSS {gb(r['rss_peak_bytes'])} GB, estimate {gb(est)} GB ({est / measured - 1:+.1%}), "
              f"reference {r['reference_s']:.1f} s, steps {[round(s, 1) for s in r['step_s']]} s, "
              f"cache {r['reference_cache_bytes'] / 1e6:.2f} MB, load {r['load_before']:.1f}", flush=True)


if __name__ == "__main__":
    main()
