"""Export: a trained adapter in the formats other tools read, each verified before it is kept.

    formats.py      `run_export`: hf (fused into the dequantized base), peft, mlx; written to a temporary
                    folder, reloaded, compared with base + adapter, then renamed into place
    peft_format.py  mlx-lm <-> Hugging Face PEFT tensor names, shapes and config
    card.py         the README model card of an export
    verify.py       the prompts the verification compares logits on
"""
