"""A data file as the UI shows it: validation report, preview rows, one pair as the model sees it."""

from __future__ import annotations

from .pairs import DataKeys
from .prepare import prepare
from .template import tokenize_pair


def _short(messages: list[dict], limit: int = 80) -> str:
    text = " / ".join(m["content"].replace("\n", " ") for m in messages)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def inspect_data(path, keys: DataKeys = DataKeys(), tokenizer=None, max_length: int = 1024,
                 prompt_limit: int = 512, preview: int = 50, example: int = 0, *, split: str = "train",
                 subset: str | None = None, revision: str | None = None, skip_invalid: bool = False) -> dict:
    """Plain data (no MLX objects): safe to hand from the engine thread to the UI.

    `path` is a file, dataset folder or hub id (or a sources.DataSpec); split/subset/revision pick what
    of a dataset is read, as the CLI's --split/--data-config/--data-revision do. `skip_invalid` only
    changes the report (`skipped`): the problems are listed either way."""
    prepared = prepare(path, keys, tokenizer, max_length, prompt_limit, split=split, subset=subset,
                       revision=revision, skip_invalid=skip_invalid, keep_messages=max(preview, example + 1))
    pairs = prepared.load.pairs
    out = {
        "report": prepared.report(),
        "errors": [str(e) for e in prepared.errors],
        "problems": prepared.problems,
        "fatal": len(prepared.fatal),  # problems of the whole source, which skipping rows cannot fix
        "mapping": prepared.summary_lines(),
        "warnings": prepared.render.warnings() if prepared.render else [],
        "preview": [{"source": p.source.rsplit(":", 1)[-1], "format": p.format, "prompt": _short(p.prompt),
                     "chosen": _short(p.chosen), "rejected": _short(p.rejected)} for p in pairs[:preview]],
        "example": None,
    }
    if tokenizer is not None and pairs:
        pair = pairs[min(example, len(pairs) - 1)]
        try:
            tp, repaired = tokenize_pair(tokenizer, pair)
            out["example"] = {"source": pair.source, "prompt": tokenizer.decode(tp.prompt.tolist()),
                              "chosen": tokenizer.decode(tp.chosen.tolist()),
                              "rejected": tokenizer.decode(tp.rejected.tolist()),
                              "prompt_tokens": len(tp.prompt), "chosen_tokens": len(tp.chosen),
                              "rejected_tokens": len(tp.rejected), "repaired": repaired}
        except Exception as e:  # shown in the UI instead of the example
            out["example"] = {"error": f"{pair.source}: {e}"}
    return out


def token_table(report: dict) -> list[str]:
    """The token-length statistics of a `prepare(...).report()` as fixed-width text lines (CLI and app)."""
    lines = [f"{'tokens':<10}{'min':>7}{'mean':>9}{'p50':>7}{'p95':>7}{'max':>7}"]
    for k, s in report.get("tokens", {}).items():
        lines.append(f"{k:<10}{s['min']:>7}{s['mean']:>9.1f}{s['p50']:>7}{s['p95']:>7}{s['max']:>7}")
    return lines
