"""The reward-vs-KL frontier: one adapter per β on the same pairs, each scored by the demo reward.

Lower β lets the policy move further from the reference (more KL) for more reward; the plot shows
how much reward each nat of KL buys. PNG with matplotlib when it is installed, SVG otherwise.
"""

from __future__ import annotations

from pathlib import Path

from ..config import TrainConfig
from ..model.generate import Sampling, load_for_generation
from ..train.trainer import Trainer
from .behaviour import behaviour_eval

__all__ = ["frontier", "frontier_svg"]


def frontier(model_path: str, data: str, prompts: list, betas: list[float], out_dir: str | Path, *,
             train_overrides: dict | None = None, sampling: Sampling | None = None, kl_samples: int = 2,
             reward_fn=None, plot: str | Path | None = None, log=print) -> list[tuple[float, float, float]]:
    """Train one adapter per β on `data` and return [(β, KL, mean tuned reward), ...].

    The base model's point is included as (inf, 0.0, base reward). If `plot` is a path and
    matplotlib is installed, a reward-vs-KL PNG is written there; otherwise a message says why not.
    """

    out_dir = Path(out_dir)
    points, base_reward = [], None
    for beta in betas:
        run = out_dir / f"beta_{beta:g}"
        if not (run / "adapters.safetensors").exists():
            cfg = TrainConfig(model=model_path, data=data, output=str(run), beta=beta,
                              **(train_overrides or {})).validate()
            Trainer(cfg).setup().train()  # a silent Reporter: this function logs per beta
        model, tok, switch = load_for_generation(model_path, str(run), log=lambda m: None)
        res = behaviour_eval(model, tok, switch, prompts, reward_fn=reward_fn, sampling=sampling,
                             kl_samples=kl_samples)
        base_reward = res.reward_base
        points.append((beta, res.kl, res.reward_tuned))
        log(f"beta {beta:g}: KL {res.kl:.3f} nats, reward {res.reward_tuned:.3f} (base {res.reward_base:.3f})")
    if plot:
        _plot(points, base_reward, Path(plot), log)
    return [(float("inf"), 0.0, base_reward)] + points if base_reward is not None else points


def _plot(points, base_reward, path: Path, log) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        svg = path.with_suffix(".svg")
        svg.write_text(frontier_svg(points, base_reward), encoding="utf-8")
        log(f"wrote {svg} (matplotlib is not installed, so an SVG instead of {path.name})")
        return True
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([0.0] + [p[1] for p in points], [base_reward] + [p[2] for p in points], "o-")
    ax.annotate("base", (0.0, base_reward))
    for beta, kl, r in points:
        ax.annotate(f"β={beta:g}", (kl, r))
    ax.set_xlabel("KL(tuned || base), nats per answer")
    ax.set_ylabel("mean reward")
    ax.set_title("reward vs KL frontier")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    log(f"wrote {path}")
    return True


def frontier_svg(points, base_reward, width: int = 480, height: int = 320) -> str:
    """A dependency-free reward-vs-KL plot: the base at KL 0, then one point per β, joined in order."""
    pts = [(0.0, base_reward, "base")] + [(kl, r, f"β={b:g}") for b, kl, r in points if kl is not None]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = 0.0, max(xs) * 1.1 or 1.0
    y0, y1 = min(ys) - 0.05, max(ys) + 0.05
    m = 50

    def sx(x):
        return m + (x - x0) / (x1 - x0) * (width - 2 * m)

    def sy(y):
        return height - m - (y - y0) / (y1 - y0) * (height - 2 * m)

    line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y, _ in pts)
    dots = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="#1f77b4"/>'
                   f'<text x="{sx(x) + 6:.1f}" y="{sy(y) - 6:.1f}" font-size="11">{label}</text>'
                   for x, y, label in pts)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">'
            f'<rect width="100%" height="100%" fill="white"/>'
            f'<line x1="{m}" y1="{height - m}" x2="{width - m}" y2="{height - m}" stroke="black"/>'
            f'<line x1="{m}" y1="{m}" x2="{m}" y2="{height - m}" stroke="black"/>'
            f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle" font-size="12">'
            f'KL(tuned || base), nats per answer (0 to {x1:.2f})</text>'
            f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" text-anchor="middle" '
            f'font-size="12">mean reward ({y0:.2f} to {y1:.2f})</text>'
            f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">reward vs KL frontier</text>'
            f'<polyline points="{line}" fill="none" stroke="#1f77b4"/>{dots}</svg>')
