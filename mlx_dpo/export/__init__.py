"""Export: a trained adapter in the formats other tools read, each verified before it is kept.

    formats.py      `run_export`: hf (fused into the dequantized base), peft, mlx, gguf; written to a temporary
                    folder, reloaded, compared with base + adapter, then renamed into place
    gguf_export.py  --format gguf: the hf path's fused model -> one .gguf + Ollama Modelfile + README, then the
                    check in llama.cpp itself (llama-cpp-python; skipped, and said so, when not installed)
    gguf_quant.py   --gguf-type q4_k_m/q5_k_m/q6_k/q4_0: llama.cpp's quantizer on the verified f16 file; drift
    gguf_lora.py    --format gguf-lora: the adapter as a llama.cpp LoRA GGUF beside a base GGUF, verified
    gguf.py         the conversion with the `gguf` package (GGUFWriter, TensorNameMap, SpecialVocab, quants):
                    pre-flight (supported architectures, tokenizer, RoPE), vocabulary, tensors streamed one at
                    a time, the Modelfile's Ollama template, and the llama.cpp comparisons
    peft_format.py  mlx-lm <-> Hugging Face PEFT tensor names, shapes and config
    card.py         the README model card of an export
    verify.py       the prompts the verification compares logits on, and rendered conversations for tokenizers
"""
