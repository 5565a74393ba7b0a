"""`mlx-dpo export`: a trained adapter as a fused Hugging Face model, a PEFT adapter, an mlx-lm folder or a GGUF."""

from __future__ import annotations

from ..demo import model_or_default
from .output import log


def cmd_export(args) -> int:
    from ..export.formats import ExportConfig, run_export

    cfg = ExportConfig(model=model_or_default(args.model), adapter=args.adapter, output=args.output,
                       format=args.format, dtype=args.dtype, quantize=args.quantize, verify=args.verify,
                       push_to_hub=args.push_to_hub, trust_remote_code=args.trust_remote_code,
                       gguf_type=args.gguf_type, gguf_base=args.gguf_base)
    result = run_export(cfg, log=log)
    print(f"exported {args.format} to {result.output} ({result.verdict()})")
    return 0
