#!/usr/bin/env python
"""Markdown tables of a `realistic.py` results file: `python benchmarks/realistic_report.py results-realistic-X.json`.

Prints the padding-waste table, the per-contender table (median [min-max] where more than one repeat
ran), and the ratios vs mlx-lm-lora measured in the same run.
"""

from __future__ import annotations

import json
import statistics
import sys


def med(x, fmt="{:.1f}"):
    if not isinstance(x, dict):
        return "—"
    if x["min"] == x["max"]:
        return fmt.format(x["median"])
    return f"{fmt.format(x['median'])} [{fmt.format(x['min'])}–{fmt.format(x['max'])}]"


def steady_pairs_per_s(r, batch):
    """Pairs per second between the end of the first and the last optimizer step (median run)."""
    vals = []
    for run in r["runs"]:
        if run.get("ok"):
            steps = run.get("steps") or 0
            if steps >= 2 and run["phases_s"]["steady"] > 0:
                vals.append(batch * (steps - 1) / run["phases_s"]["steady"])
    vals.sort()
    return vals[len(vals) // 2] if vals else None


def main(path):
    d = json.loads(open(path).read())
    w, hp, rows = d["waste"], d["hp"], d["rows"]
    print("| layout | positions the blocks run | real tokens / positions | head positions | answer tokens / head positions |")
    print("|---|---:|---:|---:|---:|")
    layouts = [("padded, unshared (mlx-lm-lora's layout)", "unshared"), ("padded, shared prompt (`--tokens-per-batch 0`)", "shared"),
               (f"packed, {d['budget']} tokens per row" + (" (the default)" if d["budget"] == 1024 else ""), "packed")]
    layouts += [(f"packed, {b} tokens per row", f"packed_{b}") for b in d.get("budgets", [])[1:]]
    for name, key in layouts:
        x = w[key]
        print(f"| {name} | {x['backbone_positions']:,} | {x['real_over_positions']:.0%} | {x['head_positions']:,} | "
              f"{x['answers_over_head']:.0%} |")
    print()
    print("| contender | runs | pairs/s e2e | pairs/s steady | load s | tokenize s | reference s | first step s | "
          "steady s | save s | e2e s | MLX peak GB | RSS GB | GEMM peak GFLOP/s | MFU | held-out loss / acc / margin |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, r in rows.items():
        if not r.get("ok"):
            print(f"| {name} | 0 | failed: {str(r.get('error'))[:80]} |" + " |" * 14)
            continue
        ph = r["phases_s"]
        sp = steady_pairs_per_s(r, hp["batch_size"])
        mfu = med({k: 100 * v for k, v in r["mfu"].items()}, "{:.1f}%") + (" **FAILED (>100%)**" if r["mfu_failed"] else "")
        h = r.get("heldout")
        ho = (f"{h['loss']:.3f} / {h['rewards/accuracies']:.2f} / {h['rewards/margins']:.3f}"
              if isinstance(h, dict) and "loss" in h else "—")
        print(f"| {name} | {r['n']} | {med(r['pairs_per_s'], '{:.3f}')} | {sp:.3f} | {med(ph['load'])} | "
              f"{med(ph['tokenize'])} | {med(ph['reference'])} | {med(ph['first_step'])} | {med(ph['steady'])} | "
              f"{med(ph['save'])} | {med(r['e2e_s'])} | {med(r['mlx_peak_gb'], '{:.2f}')} | "
              f"{med(r['rss_peak_gb'], '{:.2f}')} | {med(r['peak_gflops'])} | {mfu} | {ho} |")
    peer = rows.get("mlx-lm-lora")
    if not (peer and peer.get("ok")):
        return
    print()
    print("Each ratio is taken within one repeat (repeat r of the row against repeat r of mlx-lm-lora, run in the "
          "same round) and shown as the median [min–max] over the repeats.")
    print()
    print("| mlx-dpo row | pairs/s e2e | pairs/s steady | 3 epochs e2e (projected) | MLX peak | RSS |")
    print("|---|---:|---:|---:|---:|---:|")
    batch = hp["batch_size"]
    for name, r in rows.items():
        if name == "mlx-lm-lora" or not r.get("ok"):
            continue
        ratios = {k: [] for k in ("e2e", "steady", "e3", "peak", "rss")}
        for mine, theirs in zip(r["runs"], peer["runs"]):
            if not (mine.get("ok") and theirs.get("ok")):
                continue
            n = theirs["pairs"]
            sp, p_sp = (batch * (x["steps"] - 1) / x["phases_s"]["steady"] for x in (mine, theirs))
            ratios["e2e"].append(theirs["e2e_s"] / mine["e2e_s"])
            ratios["steady"].append(sp / p_sp)
            # 3 epochs: the first epoch as measured, then two more at the steady rate (reference cached).
            ratios["e3"].append((theirs["e2e_s"] + 2 * n / p_sp) / (mine["e2e_s"] + 2 * n / sp))
            ratios["peak"].append(mine["mlx_peak_bytes"] / theirs["mlx_peak_bytes"])
            ratios["rss"].append(mine["rss_peak_bytes"] / theirs["rss_peak_bytes"])
        cells = []
        for v in ratios.values():
            cells.append(med({"median": statistics.median(v), "min": min(v), "max": max(v)}, "{:.2f}×") if v else "—")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
