"""Render benchmarks/results-*.json (written by run.py) as BENCHMARKS.md."""

from __future__ import annotations

import json
from pathlib import Path

GB = 1e9
PEER = "mlx-lm-lora"
SCEN = {"a": "(a) 4-bit checkpoint used as is",
        "b": "(b) float checkpoint quantized to 4 bits on load"}


def _f(x, fmt="{:.3f}"):
    return "—" if x is None else fmt.format(x)


def _mfu(pairs_per_s, flops_per_pair, peak_gflops):
    if not pairs_per_s or not peak_gflops:
        return None
    return pairs_per_s * flops_per_pair / (peak_gflops * 1e9)


def _ratio(x, y):
    return None if not x or not y else x / y


def _heldout(r):
    h = r.get("heldout")
    if not h:
        return "—"
    if "error" in h:
        return "error"
    acc = h.get("rewards/accuracies")
    mar = h.get("rewards/margins")
    loss = h.get("loss")
    return f"{_f(loss)} / {_f(acc, '{:.2f}')} / {_f(mar)}"


def size_section(size, s, machine, blas):
    m, L, hp = s["model"], s["lengths"], s["hp"]
    flops_per_pair = 6 * (m["params_blocks"] + m["params_head"]) * L["tokens_per_pair"]
    peak = machine.get("matmul_fp32_gflops")
    out = [f"### {size} model: {m['params'] / 1e6:.1f}M parameters "
           f"({m['layers']} Qwen2 blocks, hidden {m['hidden']}, vocab {m['vocab']}; "
           f"{m['params_blocks'] / 1e6:.1f}M in blocks, {m['params_embedding'] / 1e6:.1f}M embedding, "
           f"{m['params_head'] / 1e6:.1f}M LM head)", "",
           f"Data: {L['pairs']} training pairs; prompt {L['prompt_min']}–{L['prompt_max']} tokens "
           f"(mean {L['prompt_mean']:.0f}), completions {L['completion_min']}–{L['completion_max']} "
           f"(mean {L['completion_mean']:.0f}); prompt = {100 * L['prompt_share']:.0f}% of the tokens of the "
           f"2 sequences of a pair; {L['tokens_per_pair']:.0f} tokens per pair (chat template included). "
           f"Settings for every contender: batch {hp['batch_size']}, {hp['iters']} steps (one epoch), "
           f"max length {hp['max_length']}, LoRA rank {hp['rank']} scale {hp['scale']} on every linear of all "
           f"{hp['layers']} blocks, AdamW lr {hp['lr']} constant, weight decay 0, no grad clipping, β {hp['beta']}, "
           f"sigmoid loss, seed {hp['seed']}. Model FLOPs per pair = 6·N·tokens = {flops_per_pair / 1e9:.1f} GFLOP "
           f"(N = block + head parameters).", ""]
    head = ("| scenario | contender | pairs/s e2e | pairs/s steady | tokens/s steady | setup s (load+ref) | "
            "first step s | e2e s | peak RSS GB | MLX peak GB | MFU steady | held-out loss / acc / margin |")
    out += [head, "|" + "|".join(["---"] * 12) + "|"]
    ratios = []
    for sc, runs in s["scenarios"].items():
        for name, r in runs.items():
            if not r.get("ok"):
                out.append(f"| {sc} | {name} | failed: {str(r.get('error'))[:120]} |" + " |" * 10)
                continue
            steady = r.get("steady_pairs_per_s")
            out.append("| " + " | ".join([
                sc, name, _f(r["e2e_pairs_per_s"]), _f(steady),
                _f(steady * L["tokens_per_pair"] if steady else None, "{:.0f}"), _f(r["setup_s"], "{:.1f}"),
                _f(r.get("first_step_s"), "{:.1f}"), _f(r["e2e_s"], "{:.1f}"),
                _f(r["rss_peak_bytes"] / GB, "{:.2f}"), _f(r.get("mlx_peak_bytes", 0) / GB, "{:.2f}"),
                _f(_mfu(steady, flops_per_pair, peak), "{:.1%}"), _heldout(r)]) + " |")
        peer = runs.get(PEER, {})
        for name in [n for n in runs if n.startswith("mlx-dpo")]:
            r = runs.get(name, {})
            if r.get("ok") and peer.get("ok"):
                ratios.append((sc, name, _ratio(r["e2e_pairs_per_s"], peer["e2e_pairs_per_s"]),
                               _ratio(r.get("steady_pairs_per_s"), peer.get("steady_pairs_per_s")),
                               _ratio(r["rss_peak_bytes"], peer["rss_peak_bytes"]),
                               _ratio(r.get("mlx_peak_bytes"), peer.get("mlx_peak_bytes")),
                               _proj3(r, hp) / _proj3(peer, hp) if _proj3(r, hp) and _proj3(peer, hp) else None))
    t = s.get("trl")
    if t:
        if t.get("ok"):
            steady = t.get("steady_pairs_per_s")
            out.append("| float32 | TRL DPOTrainer (PyTorch CPU, PEFT) | " + " | ".join([
                _f(t["e2e_pairs_per_s"]), _f(steady), _f(steady * L["tokens_per_pair"] if steady else None, "{:.0f}"),
                _f(t["setup_s"], "{:.1f}"), _f(t.get("first_step_s"), "{:.1f}"), _f(t["e2e_s"], "{:.1f}"),
                _f(t.get("rss_peak_train_bytes", t["rss_peak_bytes"]) / GB, "{:.2f}"), "—",
                _f(_mfu(steady, flops_per_pair, peak), "{:.1%}"), _heldout(t)]) + " |")
        else:
            out.append(f"| float32 | TRL | failed: {str(t.get('error'))[:160]} |" + " |" * 10)
    if ratios:
        out += ["", f"Ratios vs mlx-lm-lora, same run ({size}; > 1 is better for speed, < 1 is better for memory):", "",
                "| scenario | mlx-dpo | pairs/s e2e, 1 epoch | pairs/s steady | 3 epochs e2e (projected) | peak RSS | MLX peak |",
                "|---|---|---|---|---|---|---|"]
        for sc, name, e2e, st, rss, mlxp, p3 in ratios:
            out.append(f"| {sc} | {name} | {_f(e2e, '{:.2f}×')} | {_f(st, '{:.2f}×')} | {_f(p3, '{:.2f}×')} | "
                       f"{_f(rss, '{:.2f}×')} | {_f(mlxp, '{:.2f}×')} |")
    return out


def _proj3(r, hp):
    """Pairs/s over 3 epochs: measured setup + measured first epoch + 2 more epochs at the steady rate."""
    if not r.get("ok") or not r.get("steady_s_per_step"):
        return None
    t = r["e2e_s"] + 2 * hp["iters"] * r["steady_s_per_step"]
    return 3 * hp["iters"] * hp["batch_size"] / t


def machine_lines(m):
    v = m.get("versions", {})
    return [f"- CPU: {m.get('cpu')}, {m.get('cores')} cores, {m.get('ram_gb', 0):.0f} GiB RAM; {m.get('platform')}",
            f"- BLAS: {m.get('blas')}; measured in this run: fp32 2048² `mx.matmul` "
            f"{m.get('matmul_fp32_gflops', 0):.1f} GFLOP/s (the MFU peak), 4-bit `mx.quantized_matmul` "
            f"{m.get('qmm_q4_gflops', 0):.1f} GFLOP/s",
            "- " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
            f"- load average when the run started: {', '.join(f'{x:.2f}' for x in m.get('load_avg_before', []))} "
            "(the machine is shared with other work: numbers are noisy, ratios within one run are the reliable part)"]


def write(out_path, results_dir: Path, preface: str | None = None):
    files = sorted(Path(results_dir).glob("results-*.json"), key=lambda p: ("quick" in p.name, p.name))
    lines = ["# Benchmarks", "", preface or _PREFACE, ""]
    for f in files:
        res = json.loads(f.read_text())
        m = res.get("machine", {})
        lines += [f"## `python benchmarks/run.py{' --quick' if res['mode'] == 'quick' else ''}"
                  f"{' --openblas' if res['blas'] == 'openblas' else ''}` — {res['started']}, "
                  f"{res.get('total_s', 0) / 60:.1f} min", ""]
        lines += machine_lines(m) + [""]
        for size, s in res["sizes"].items():
            lines += size_section(size, s, m, res["blas"]) + [""]
    notes = Path(results_dir) / "analysis.md"  # hand-written analysis, kept across re-renders
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    Path(out_path).write_text("\n".join(lines) + "\n")


_PREFACE = """Generated by `python benchmarks/run.py` (see `benchmarks/README.md`); the analysis sections
at the end are written by hand from these numbers. Every contender runs in its own process on the
same model files, the same pairs file and the same settings, under the same BLAS.

Columns: *pairs/s e2e* = pairs trained / (load + data + reference precompute + training) wall time,
imports excluded; *steady* = pairs/s between the end of the first and the last optimizer step (no
compile, no precompute); *peak RSS* = `ru_maxrss` of the contender's process; *MLX peak* =
`mx.get_peak_memory()`; *MFU* = steady model FLOPs (6·N per token) / the fp32 matmul rate measured in
the same run — on a frozen LoRA base the work is ~4·N per token plus any reference forward, so
~67% is the ceiling. *held-out* = DPO loss / rewards accuracy / reward margin of the trained adapter on
held-out pairs, scored by one evaluator (mlx-dpo's) for both MLX contenders on the base each trained on;
TRL's are from its own `evaluate()`."""


if __name__ == "__main__":  # re-render BENCHMARKS.md from the stored results and analysis.md
    here = Path(__file__).resolve().parent
    write(here.parent / "BENCHMARKS.md", here)
