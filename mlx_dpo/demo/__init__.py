"""The demo: a bundled tiny chat model and preference pairs on tasks with checkable answers.

This module is the one place that knows where the demo lives and which settings make it learn
visibly within a minute or two on a laptop CPU; the CLI, `mlx-dpo demo` and the app read them here.
The files are `sample_data/` of the source tree, installed beside the engine as the `sample_data`
package (see pyproject.toml), so they are found from a wheel as well as from a checkout.

Submodules: `tasks` (the task corpus and answer styles), `reward` (a ground-truth reward for answers),
`behaviour` (base vs tuned answers scored by that reward, and a KL estimate), `frontier` (one run
per beta, reward against KL).
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path


def sample_data_dir() -> Path | None:
    """The folder of the bundled sample data (None if this installation has none)."""
    spec = find_spec("sample_data")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


_ROOT = sample_data_dir() or Path(__file__).resolve().parents[2] / "sample_data"
DEMO_MODEL = _ROOT / "demo-model"          # 0.9M parameters, its own tokenizer and chat template
DEMO_PAIRS = _ROOT / "demo_pairs.jsonl"    # training pairs on the demo tasks
DEMO_VALID = _ROOT / "demo_valid.jsonl"    # held-out pairs (their prompts are answered by `eval --generate`)

# Train settings under which the demo model visibly learns the pairs' preference (polite, correct,
# concise answers) in 24 steps on a laptop CPU; everything else keeps the engine's defaults.
# rpo_alpha keeps the chosen answers likely: without it these settings ruin the model when a run goes longer
# (150 steps: correct answers 55% -> 0%) or trains a few chat picks (benchmarks/small_prefs.py, BENCHMARKS.md).
DEMO_SETTINGS = {"iters": 24, "batch_size": 2, "learning_rate": 5e-4, "beta": 0.5, "lora_rank": 4,
                 "max_length": 64, "rpo_alpha": 1.0}


def default_model() -> str | None:
    """The bundled demo model, used when no --model is given (works offline out of the box)."""
    return str(DEMO_MODEL) if (DEMO_MODEL / "config.json").exists() else None


def is_demo_model(model: str | None) -> bool:
    return bool(model) and Path(model).expanduser().resolve() == DEMO_MODEL


def model_or_default(model: str | None) -> str:
    """`model`, else the demo model; a UsageError when neither is there."""
    from ..errors import UsageError

    model = model or default_model()
    if not model:
        raise UsageError("--model is required (this installation has no bundled demo model)")
    return model
