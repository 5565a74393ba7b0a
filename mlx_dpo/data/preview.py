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
        out["example"] = rendered_pair(tokenizer, pairs[min(example, len(pairs) - 1)])
    return out


def rendered_pair(tokenizer, pair) -> dict:
    """One pair as the model sees it (the app's example, `validate --show`): the decoded prompt up to the
    boundary, each completion after it with its end token, token counts; {"error": ...} if it does not render."""
    try:
        tp, repaired = tokenize_pair(tokenizer, pair)
    except Exception as e:
        return {"error": f"{pair.source}: {e}"}
    system = next((m["content"] for m in pair.prompt if m["role"] == "system"), None)
    return {"source": pair.source, "system": system, "prompt": tokenizer.decode(tp.prompt.tolist()),
            "chosen": tokenizer.decode(tp.chosen.tolist()), "rejected": tokenizer.decode(tp.rejected.tolist()),
            "prompt_tokens": len(tp.prompt), "chosen_tokens": len(tp.chosen), "rejected_tokens": len(tp.rejected),
            "chosen_end": _end_token(tokenizer, tp.chosen), "rejected_end": _end_token(tokenizer, tp.rejected),
            "repaired": repaired}


def _end_token(tokenizer, ids) -> str:
    """The completion's last token that is not whitespace (ChatML ends a turn with a newline after it)."""
    for t in reversed(ids.tolist()):
        text = tokenizer.decode([t])
        if text.strip():
            return text
    return ""


BOUNDARY = "▌"  # printed where the prompt ends: everything after it is scored


def rendered_lines(ex: dict, n: int, total: int) -> list[str]:
    """`validate --show`'s text for one rendered pair (see rendered_pair)."""
    if "error" in ex:
        return [f"pair {n} of {total}: {ex['error']}"]
    out = [f"=== pair {n} of {total}: {ex['source']} as the model sees it (prompt {ex['prompt_tokens']} tokens, "
           f"chosen {ex['chosen_tokens']}, rejected {ex['rejected_tokens']}"
           f"{', boundary repaired' if ex['repaired'] else ''}); {BOUNDARY} marks the boundary, what follows "
           "it is scored ==="]
    if ex["system"] is not None:
        out.append(f"system: {ex['system']!r}")
    out.append(ex["prompt"] + BOUNDARY)
    for key in ("chosen", "rejected"):
        out.append(f"--- {key} (ends with {ex[key + '_end']!r}):")
        out.append(BOUNDARY + ex[key])
    return out


def token_table(report: dict) -> list[str]:
    """The token-length statistics of a `prepare(...).report()` as fixed-width text lines (CLI and app)."""
    lines = [f"{'tokens':<10}{'min':>7}{'mean':>9}{'p50':>7}{'p95':>7}{'max':>7}"]
    for k, s in report.get("tokens", {}).items():
        lines.append(f"{k:<10}{s['min']:>7}{s['mean']:>9.1f}{s['p50']:>7}{s['p95']:>7}{s['max']:>7}")
    return lines
