"""Model: the base model, its adapter, and what runs on them outside training.

    load.py        a local folder or hub id (offline cache honoured) -> model + tokenizer; quantize on request
    cpu_matmul.py  on the CPU only: quantized layers as dequantize + BLAS matmul (MLX's CPU kernel is slow)
    adapters.py    LoRA/DoRA layers (mlx-lm's), adapter files in mlx-lm's format, AdapterSwitch (off/on in place)
    generate.py    sampling, streamed answers and multi-turn chat on mlx-lm's generator
    ab.py          A/B answers for collecting preferences (sides shuffled per message; picks make pairs)
    memory.py      a memory estimate of a training run from config.json alone (no MLX)
"""
