#!/usr/bin/env python
"""Markdown tables of a `realistic.py` results file: `python benchmarks/realistic_report.py results-realistic-X.json`.

Prints the padding-waste table, the per-contender table (median [min-max] where more than one repeat
ran), and the ratios vs mlx-lm-lora measured in the same run.
"""

from __future__ import annotations

import json
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
    for name, key in (("padded, unshared (mlx-lm-lora's layout)", "unshared"), ("padded, shared prompt (today's default)", "shared"),
                      (f"packed, {d['budget']} tokens per row", "packed")):
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
    print("| mlx-dpo row | pairs/s e2e | pairs/s steady | 3 epochs e2e (projected) | MLX peak | RSS |")
    print("|---|---:|---:|---:|---:|---:|")
    p_e2e, p_sp = peer["pairs_per_s"]["median"], steady_pairs_per_s(peer, hp["batch_size"])
    n = peer["runs"][0]["pairs"]
    p3 = 3 * n / (peer["e2e_s"]["median"] + 2 * n / p_sp)  # epochs 2-3 at the steady rate
    for name, r in rows.items():
        if name == "mlx-lm-lora" or not r.get("ok"):
            continue
        sp = steady_pairs_per_s(r, hp["batch_size"])
        # 3 epochs: this row's first epoch, then two more at its steady rate with the reference cached.
        e3 = 3 * n / (r["e2e_s"]["median"] + 2 * n / sp)
        print(f"| {name} | {r['pairs_per_s']['median'] / p_e2e:.2f}× | {sp / p_sp:.2f}× | {e3 / p3:.2f}× | "
              f"{r['mlx_peak_gb']['median'] / peer['mlx_peak_gb']['median']:.2f}× | "
              f"{r['rss_peak_gb']['median'] / peer['rss_peak_gb']['median']:.2f}× |")


if __name__ == "__main__":
    main(sys.argv[1])
