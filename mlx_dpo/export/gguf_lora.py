"""`--format gguf-lora`: the adapter alone as a llama.cpp LoRA GGUF, next to a base GGUF (the f16 export of the
base, or one the user already has: `--gguf-base FILE`), with an Ollama Modelfile (FROM + ADAPTER).

The layout is that of llama.cpp's convert_lora_to_gguf.py: general.type "adapter", adapter.type "lora",
adapter.lora.alpha, the base architecture and its hyper-parameters, and per adapted weight
`<base tensor name>.lora_a` (numpy shape (r, in), PEFT's lora_A) and `.lora_b` ((out, r), PEFT's lora_B), the
latter with the base's own row conversion (Llama's q/k permutation). llama.cpp scales by alpha / r; mlx-lm by
`scale`, so alpha = scale * r. The tensors stay float32: they are small, and exactly what MLX computes with.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..errors import TrainingStopped, UsageError
from .gguf_arch import transform

# llama.cpp base file types (general.file_type) whose logits the f16 tolerance covers.
_FLOAT_FILE_TYPES = {0: "f32", 1: "f16", 32: "bf16"}


def lora_file_names(output: Path) -> tuple[str, str]:
    from .gguf_export import gguf_file_name

    return gguf_file_name(output, "lora"), gguf_file_name(output, "base-f16")


def preflight_lora(cfg, plan, adapter_cfg: dict, adapter_dir: Path, base_config: dict) -> list[str]:
    """Refuse, before any work, what llama.cpp cannot take as a LoRA; returns the adapted mlx module paths."""
    import gguf
    import mlx.core as mx

    from ..model.adapters import ADAPTER_FILE

    if adapter_cfg.get("fine_tune_type") == "dora":
        raise UsageError("--format gguf-lora: a DoRA adapter has no llama.cpp LoRA form (llama.cpp applies "
                         "x·A·B only, not DoRA's per-row normalisation); export --format gguf (fused) instead")
    names = gguf.TensorNameMap(getattr(gguf.MODEL_ARCH, plan.arch), base_config["num_hidden_layers"])
    modules = sorted({k.rsplit(".", 1)[0] for k in mx.load(str(adapter_dir / ADAPTER_FILE))})
    for m in modules:
        target = names.get_name(m + ".weight", try_suffixes=(".weight",))
        if target is None or not target.startswith("blk."):
            raise UsageError(f"--format gguf-lora: the LoRA on {m!r} ({plan.arch.lower()}) is not converted (only "
                             "the linear layers of the transformer blocks are); export --format gguf (fused) instead")
    if cfg.gguf_base:
        _check_base_file(Path(cfg.gguf_base), plan, base_config)
    return modules


def _check_base_file(path: Path, plan, base_config: dict) -> None:
    import gguf

    if not path.is_file():
        raise UsageError(f"--gguf-base {path}: no such file")
    try:
        f = gguf.GGUFReader(str(path)).fields
        arch = f["general.architecture"].contents()
        blocks = f[f"{arch}.block_count"].contents()
    except Exception as e:
        raise UsageError(f"--gguf-base {path}: not a readable GGUF model ({type(e).__name__})") from None
    want = gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, plan.arch)]
    if arch != want or blocks != base_config["num_hidden_layers"]:
        raise UsageError(f"--gguf-base {path}: a {arch} model of {blocks} blocks, but the adapter's base is a "
                         f"{want} model of {base_config['num_hidden_layers']} blocks; name the GGUF of the same base")


def base_file_type(path: Path) -> str | None:
    """'f32', 'f16' or 'bf16' for a float base GGUF, None for a quantized one."""
    import gguf

    field = gguf.GGUFReader(str(path)).fields.get("general.file_type")
    return _FLOAT_FILE_TYPES.get(int(field.contents())) if field is not None else None


def write_lora_gguf(path: Path, weights: dict[str, np.ndarray], adapter_cfg: dict, plan, base_config: dict,
                    name: str) -> int:
    """`weights`: mlx-lm's `<module>.lora_a` (in, r) / `.lora_b` (r, out). Returns the number of adapted weights."""
    import gguf

    from .gguf import _add_hparams

    names = gguf.TensorNameMap(getattr(gguf.MODEL_ARCH, plan.arch), base_config["num_hidden_layers"])
    params = adapter_cfg["lora_parameters"]
    w = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, plan.arch)])
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(params["scale"]) * int(params["rank"]))
    w.add_name(name)
    _add_hparams(w, base_config, plan)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    modules = sorted({k.rsplit(".", 1)[0] for k in weights})
    for m in modules:
        key = m + ".weight"
        target = names.get_name(key, try_suffixes=(".weight",))
        a = np.ascontiguousarray(weights[m + ".lora_a"].T.astype(np.float32))                  # (r, in)
        b = transform(plan.family, base_config, key, weights[m + ".lora_b"].T.astype(np.float32))  # (out, r)
        w.add_tensor(f"{target}.lora_a", a)
        w.add_tensor(f"{target}.lora_b", np.ascontiguousarray(b))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return len(modules)


def lora_modelfile(base_ref: str, adapter_name: str, tokenizer, stop_texts: list[str]) -> str:
    from .gguf import modelfile

    text = modelfile("X", tokenizer, stop_texts)
    return text.replace("FROM ./X\n", f"FROM {base_ref}\nADAPTER ./{adapter_name}\n", 1)


def export_gguf_lora(cfg, model, tokenizer, base_path, base_config, adapter_cfg, run_cfg, plan, tmp: Path,
                     inputs, tuned, effect, write_hf, ExportResult, log):
    import mlx.core as mx

    from ..model.adapters import adapter_weights, set_adapter_weights
    from .card import model_card
    from .gguf import check_in_llama_cpp, llama_cpp_missing, readable_check, run_readme, tolerance, write_gguf
    from .gguf_export import stop_tokens
    from .gguf_quant import size_text
    from .verify import verification_conversations

    out = Path(cfg.output)
    adapter_name, base_name = lora_file_names(out)
    stops = stop_tokens(tokenizer)
    weights = {k: np.array(v.astype(mx.float32)) for k, v in adapter_weights(model).items()}
    n = write_lora_gguf(tmp / adapter_name, weights, adapter_cfg, plan, base_config, out.name)
    log(f"gguf: wrote {adapter_name} ({plan.arch.lower()} LoRA, {n} adapted weights, "
        f"{size_text((tmp / adapter_name).stat().st_size)})")
    if cfg.gguf_base:
        base_file = Path(cfg.gguf_base).resolve()
        base_ref = str(base_file)
    else:  # the base alone: the same adapter with B = 0 fuses to exactly the base weights
        set_adapter_weights(model, {k: (np.zeros_like(v) if k.endswith("lora_b") else v) for k, v in weights.items()},
                            "the base")
        hf = tmp.parent / f"{tmp.name}-hf"
        shutil.rmtree(hf, ignore_errors=True)
        hf.mkdir(parents=True)
        try:
            write_hf(cfg, model, tokenizer, base_path, base_config, adapter_cfg, "float16", hf)
            counts = write_gguf(hf, tmp / base_name, plan, "f16", f"{out.name} base", stops)
        finally:
            shutil.rmtree(hf, ignore_errors=True)
        if cfg.verify:
            readable_check(tmp / base_name, counts)
        base_file, base_ref = tmp / base_name, f"./{base_name}"
        log(f"gguf: wrote {base_name} (the base, f16, {size_text(base_file.stat().st_size)})")
    stop_texts = [tokenizer.decode([i]) for i in stops]
    (tmp / "Modelfile").write_text(lora_modelfile(base_ref, adapter_name, tokenizer, stop_texts), encoding="utf-8")

    result = ExportResult(tmp, None, effect, None)
    if not cfg.verify:
        result.note = "--no-verify"
    elif (why := llama_cpp_missing()) is not None:
        result.note = f"{why} (not loaded in llama.cpp)"
        log(f"verify: llama.cpp check skipped: {why}")
    else:
        kind = base_file_type(base_file)
        tol = tolerance("f16" if kind in ("f32", "f16") else kind, tuned, plan.family.tolerance_scale) if kind else None
        convs = verification_conversations(tokenizer, run_cfg.get("data"))
        templated = bool(getattr(tokenizer, "chat_template", None))
        texts = [(text, not templated) for _, text in convs]
        try:
            check = check_in_llama_cpp(base_file, inputs, tuned, texts, tokenizer, [m for m, _ in convs], stops,
                                       lora_path=tmp / adapter_name)
        except (RuntimeError, ValueError) as e:
            raise TrainingStopped(f"gguf-lora export: llama.cpp did not load {base_file.name} + {adapter_name} "
                                  f"({e}); nothing was written to {cfg.output}") from None
        log(f"verify: llama.cpp base ({base_file.name}) + LoRA GGUF: max |logit difference| vs MLX base + adapter "
            f"= {check.max_abs_diff:.3g} (adapter's own effect on logits: {effect:.3g}"
            + (f"; tolerance {tol:g})" if tol else "; quantized base: drift reported, not enforced)"))
        problems = list(check.details)
        if tol is not None and not (check.max_abs_diff <= tol):
            problems.insert(0, f"max |logit difference| {check.max_abs_diff:.3g} exceeds the f16 tolerance {tol:g}")
        if problems:
            raise TrainingStopped("gguf-lora export verification in llama.cpp failed: " + "; ".join(problems)
                                  + f"; nothing was written to {cfg.output}")
        result = ExportResult(tmp, check.max_abs_diff, effect, tol,
                              note="base + adapter in llama.cpp; tokens and stop tokens match"
                              + ("" if tol else "; quantized base: drift reported, not enforced"))
    card = model_card(cfg, base_config, adapter_cfg, run_cfg,
                      "adapter float32, base " + ("f16" if not cfg.gguf_base else Path(cfg.gguf_base).name))
    readme = run_readme(adapter_name, "LoRA adapter", result.verdict())
    readme = readme.replace(f"`llama-cli -m {adapter_name} -cnv`", f"`llama-cli -m {base_ref} --lora {adapter_name} -cnv`")
    readme = readme.replace(f"`llama-server -m {adapter_name}`", f"`llama-server -m {base_ref} --lora {adapter_name}`")
    readme = readme.replace(f"- LM Studio: import `{adapter_name}` (`lms import {adapter_name}`)",
                            f"- The adapter needs its base: `{base_ref}` (the same base the adapter was trained on)")
    (tmp / "README.md").write_text(card + readme, encoding="utf-8")
    return result
