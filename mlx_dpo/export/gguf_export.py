"""`--format gguf`: fuse (dequantized) through the hf export path, convert to one GGUF file (export/gguf.py),
write the Ollama Modelfile and README, then verify in llama.cpp itself when llama-cpp-python is installed."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from ..errors import TrainingStopped
from .card import model_card
from .gguf import (check_in_llama_cpp, llama_cpp_missing, modelfile, readable_check, run_readme,
                   tolerance, write_gguf)
from .gguf_quant import K_QUANTS, measure_drift, quantize, size_text
from .verify import verification_conversations


def quantize_verified(tmp: Path, f16_name: str, final: str, gguf_type: str, inputs, tuned, effect, checked,
                      ExportResult, log):
    """The verified f16 file through llama.cpp's quantizer; the drift from MLX measured and reported, never hidden."""
    src, dst = tmp / f16_name, tmp / final
    quantize(src, dst, gguf_type)
    f16_size, size = src.stat().st_size, dst.stat().st_size
    src.unlink()
    drift = measure_drift(dst, inputs, tuned)
    log(f"gguf: {final}: {size_text(size)} ({gguf_type}, llama.cpp's quantizer; the f16 file was "
        f"{size_text(f16_size)}, {f16_size / size:.1f}x larger)")
    log(f"verify: {gguf_type} in llama.cpp vs MLX base + adapter: {drift.line()} "
        f"(adapter's own effect on logits: {effect:.3g}; quantized: drift reported, not enforced)")
    kept = max(0.0, 1 - drift.max_abs_diff / effect) if effect > 0 else 1.0
    log(f"note: {gguf_type} moved logits by up to {drift.max_abs_diff:.3g}; about {kept:.0%} of the adapter's "
        "effect is above that noise")
    f16_note = f"f16 {checked.max_abs_diff:.3g} within {checked.tolerance:g}" if checked.max_abs_diff is not None else ""
    return ExportResult(tmp, drift.max_abs_diff, effect, None,
                        note=f"{gguf_type} drift reported, not enforced: {drift.line()}; {size_text(size)}"
                        + (f"; before quantizing: {f16_note}" if f16_note else ""))


def gguf_file_name(output: Path, gguf_type: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", output.name).strip("-.") or "model"
    if stem.lower().endswith(f"-{gguf_type.lower()}"):  # a folder already named for its type (the app's run-gguf-f16)
        return f"{stem}.gguf"
    return f"{stem}-{gguf_type}.gguf"


def stop_tokens(tokenizer) -> list[int]:
    ids = list(getattr(tokenizer, "eos_token_ids", None) or [])
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is not None and eos not in ids:
        ids.insert(0, eos)
    elif eos is not None:
        ids.remove(eos)
        ids.insert(0, eos)  # the tokenizer's own eos first: it becomes the GGUF's eos
    return ids


def export_gguf(cfg, model, tokenizer, base_path, base_config, adapter_cfg, run_cfg, dtype, plan, tmp: Path,
                inputs, tuned, effect, write_hf, ExportResult, log):
    """`write_hf` and `ExportResult` come from formats.py (passed in: formats imports this module)."""
    out = Path(cfg.output)
    hf = tmp.parent / f"{tmp.name}-hf"
    shutil.rmtree(hf, ignore_errors=True)
    hf.mkdir(parents=True)
    stops = stop_tokens(tokenizer)
    final = gguf_file_name(out, cfg.gguf_type)
    # A k-quant is llama.cpp's quantizer applied to the f16 file, once that file has passed the f16 check.
    kquant = cfg.gguf_type in K_QUANTS
    gtype = "f16" if kquant else cfg.gguf_type
    name = f".{final}.f16" if kquant else final
    try:
        write_hf(cfg, model, tokenizer, base_path, base_config, adapter_cfg, dtype, hf)
        counts = write_gguf(hf, tmp / name, plan, gtype, out.name, stops)
    finally:
        shutil.rmtree(hf, ignore_errors=True)
    log(f"gguf: wrote {name} ({plan.arch.lower()}, {gtype}; tensors "
        + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + ")")
    stop_texts = [tokenizer.decode([i]) for i in stops]
    (tmp / "Modelfile").write_text(modelfile(final, tokenizer, stop_texts), encoding="utf-8")

    tol = tolerance(gtype, tuned, plan.family.tolerance_scale)
    result = ExportResult(tmp, None, effect, None)
    if cfg.verify:
        readable_check(tmp / name, counts)
    if not cfg.verify:
        result.note = "--no-verify"
    elif (why := llama_cpp_missing()) is not None:
        result.note = f"{why} (the file was only read back with gguf's reader)"
        log(f"verify: llama.cpp check skipped: {why}")
    else:
        convs = verification_conversations(tokenizer, run_cfg.get("data"))
        templated = bool(getattr(tokenizer, "chat_template", None))
        texts = [(text, not templated) for _, text in convs]
        check = check_in_llama_cpp(tmp / name, inputs, tuned, texts, tokenizer, [m for m, _ in convs], stops)
        where = f"gguf export ({gtype}) in llama.cpp"
        log(f"verify: {where}: max |logit difference| vs MLX base + adapter = {check.max_abs_diff:.3g} "
            f"(adapter's own effect on logits: {effect:.3g}"
            + (f"; tolerance {tol:g})" if tol else "; quantized: drift reported, not enforced)"))
        log(f"verify: tokenization of {len(texts)} rendered conversation(s) "
            f"{'identical in llama.cpp' if check.tokens_equal else 'DIFFERS in llama.cpp'}; "
            f"stop token(s) {stops} {'end generation' if check.stop_ok else 'NOT all end generation'}; "
            f"{check.template_note}")
        problems = list(check.details)
        if tol is not None and not (check.max_abs_diff <= tol):
            problems.insert(0, f"max |logit difference| {check.max_abs_diff:.3g} exceeds the {gtype} "
                               f"tolerance {tol:g}")
        if problems:
            raise TrainingStopped("gguf export verification in llama.cpp failed: " + "; ".join(problems)
                                  + f"; nothing was written to {cfg.output}")
        if tol is None:
            kept = max(0.0, 1 - check.max_abs_diff / effect) if effect > 0 else 1.0
            log(f"note: {cfg.gguf_type} moved logits by up to {check.max_abs_diff:.3g}; about {kept:.0%} of the "
                "adapter's effect is above that noise")
        result = ExportResult(tmp, check.max_abs_diff, effect, tol,
                              note="in llama.cpp; tokens and stop tokens match"
                              + ("" if tol else f"; {cfg.gguf_type} drift reported, not enforced"))
    if kquant:
        result = quantize_verified(tmp, name, final, cfg.gguf_type, inputs, tuned, effect, result, ExportResult, log)
    card = model_card(cfg, base_config, adapter_cfg, run_cfg, cfg.gguf_type)
    (tmp / "README.md").write_text(card + run_readme(final, cfg.gguf_type, result.verdict()), encoding="utf-8")
    return result
