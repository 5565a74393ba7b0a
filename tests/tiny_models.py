"""Offline builders for tiny Hugging Face-format models, for tests and benchmarks.

:func:`build_tiny_model` writes a folder that ``mlx_lm.load`` and
``transformers.AutoTokenizer`` both load offline:

* ``config.json``: a HF-style ``llama`` or ``qwen2`` config,
* ``generation_config.json``,
* ``tokenizer.json`` plus ``tokenizer_config.json``: a byte-level BPE tokenizer
  trained with ``tokenizers`` on a small built-in corpus, with ChatML special
  tokens and, if you ask for it, a ChatML chat template,
* ``model.safetensors``: seeded random float32 weights in HF naming, or an
  mlx-community-style pre-quantized checkpoint when ``quantize_bits`` is set.

The output is deterministic: the same arguments give byte-identical files.
"""

from __future__ import annotations

import contextlib
import io
import json
import pathlib

__all__ = ["build_tiny_model", "CHATML_TEMPLATE", "SPECIAL_TOKENS", "DEFAULT_CORPUS"]

#: Architectures (config.json model_type) the builder writes.
ARCHS = ("llama", "qwen2", "qwen3", "mistral", "gemma2", "gemma3_text", "phi3")

#: Special tokens get ids 0, 1, 2 in this order.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
PAD_TOKEN, BOS_TOKEN, EOS_TOKEN = "<|endoftext|>", "<|endoftext|>", "<|im_end|>"

#: A ChatML template (system/user/assistant, ``add_generation_prompt``), as used by Qwen2.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Qwen2's pre-tokenizer regex (GPT-4 style; digits are split one by one).
_SPLIT_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
                r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")

#: Short English text for training the tokenizer.
DEFAULT_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello! How are you today? I am fine, thank you for asking.",
    "You are a helpful assistant. Answer the user's question clearly and politely.",
    "system: be concise. user: what is the capital of France? assistant: Paris.",
    "The weather is sunny and warm, so we will go to the park this afternoon.",
    "Please write a short poem about the sea, the wind and the stars at night.",
    "A good answer is honest, helpful and harmless; a bad answer is rude or wrong.",
    "Machine learning models learn patterns from data and make predictions.",
    "Direct preference optimization trains a policy on chosen and rejected responses.",
    "She reads books in the library every morning before her classes begin.",
    "They cooked rice, beans and vegetables for dinner with their friends.",
    "Numbers like 1, 2, 3, 10, 42 and 2024 appear in many simple examples.",
    "Why is the sky blue? Sunlight is scattered by the molecules in the air.",
    "Could you explain how a computer stores information in memory and on disk?",
    "The train leaves the station at nine o'clock and arrives at noon.",
    "I think that this is the best answer, but that one is also quite good.",
    "Water boils at one hundred degrees and freezes at zero degrees Celsius.",
    "Here is a list: apples, oranges, bananas, grapes, and strawberries.",
    "Once upon a time there was a little cat who lived in a small house.",
    "The teacher asked the students to write their names on the paper.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "Thank you very much! You're welcome. Have a nice day and see you soon.",
    "The chosen response should be preferred over the rejected response.",
    "Sorry, I cannot help with that request, but I can help with something else.",
]


def _config(arch, vocab_size, hidden_size, num_layers, num_heads, num_kv_heads,
            intermediate_size, tie_word_embeddings, bos_id, eos_id):
    """Return a HF-style ``config.json`` dict for ``arch`` ("llama" or "qwen2")."""
    cfg = {
        "attention_dropout": 0.0,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "hidden_act": "silu",
        "hidden_size": hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": intermediate_size,
        "max_position_embeddings": 2048,
        "model_type": arch,
        "num_attention_heads": num_heads,
        "num_hidden_layers": num_layers,
        "num_key_value_heads": num_kv_heads,
        "rms_norm_eps": 1e-6,
        "rope_scaling": None,
        "tie_word_embeddings": tie_word_embeddings,
        "torch_dtype": "float32",
        "transformers_version": "4.45.0",
        "use_cache": True,
        "vocab_size": vocab_size,
    }
    head_dim = hidden_size // num_heads
    if arch == "llama":
        cfg.update(architectures=["LlamaForCausalLM"], attention_bias=False, mlp_bias=False,
                   head_dim=head_dim, pretraining_tp=1, rope_theta=10000.0,
                   rms_norm_eps=1e-5)
    elif arch == "mistral":  # mlx-lm runs it as llama; HF's MistralForCausalLM has no biases either
        cfg.update(architectures=["MistralForCausalLM"], head_dim=head_dim, rope_theta=1000000.0,
                   rms_norm_eps=1e-5, sliding_window=None)
    elif arch == "gemma2":  # query_pre_attn_scalar = head_dim, as Gemma 2 2B/9B (llama.cpp assumes it)
        cfg.update(architectures=["Gemma2ForCausalLM"], head_dim=head_dim, query_pre_attn_scalar=head_dim,
                   attn_logit_softcapping=50.0, final_logit_softcapping=30.0, sliding_window=4096,
                   hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh", rope_theta=10000.0)
    elif arch == "gemma3_text":
        cfg.update(architectures=["Gemma3ForCausalLM"], head_dim=head_dim, query_pre_attn_scalar=head_dim,
                   sliding_window=512, sliding_window_pattern=6, rope_local_base_freq=10000.0,
                   rope_theta=1000000.0, final_logit_softcapping=None, attn_logit_softcapping=None,
                   hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh")
    elif arch == "phi3":
        cfg.update(architectures=["Phi3ForCausalLM"], rope_theta=10000.0, rms_norm_eps=1e-5,
                   original_max_position_embeddings=2048, partial_rotary_factor=1.0, sliding_window=None)
    elif arch == "qwen3":  # Qwen2's layout without q/k/v biases, plus RMSNorms of the queries and keys
        cfg.update(architectures=["Qwen3ForCausalLM"], head_dim=head_dim, attention_bias=False,
                   max_window_layers=num_layers, rope_theta=1000000.0, sliding_window=None, use_sliding_window=False)
    else:  # qwen2
        cfg.update(architectures=["Qwen2ForCausalLM"], max_window_layers=num_layers,
                   rope_theta=1000000.0, sliding_window=2048, use_sliding_window=False)
    return dict(sorted(cfg.items()))


def _train_tokenizer(corpus, vocab_size):
    """Train a byte-level BPE ``tokenizers.Tokenizer`` with at most ``vocab_size`` tokens.

    The pipeline (NFC, Qwen2 split regex, ByteLevel) copies Qwen2's tokenizer.json on
    purpose: transformers 5 ignores ``tokenizer_class`` for ``model_type`` qwen2 and
    rebuilds exactly this pipeline in ``Qwen2Tokenizer``, so anything else would
    tokenize differently there than with the raw ``tokenizers`` file.
    """
    from tokenizers import (Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers,
                            processors, trainers)

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be >= {len(alphabet) + len(SPECIAL_TOKENS)} "
                         "(256 bytes + special tokens)")
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(list(corpus), trainer=trainer)
    assert tok.get_vocab_size() <= vocab_size
    return tok


def _tokenizer_config(chat_template):
    """Return ``tokenizer_config.json`` contents (ChatML conventions, as in Qwen2)."""
    cfg = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                     "single_word": False, "special": True}
            for i, t in enumerate(SPECIAL_TOKENS)
        },
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS_TOKEN,
        "errors": "replace",
        "model_max_length": 2048,
        "pad_token": PAD_TOKEN,
        "split_special_tokens": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": None,
    }
    if chat_template:
        cfg["chat_template"] = CHATML_TEMPLATE
    return cfg


def _random_weights(model, seed, std=0.02):
    """Seeded float32 numpy arrays for every parameter of an (unquantized) mlx model.

    Names come from ``model.parameters()``, which for llama/qwen2 in mlx-lm equal
    the HF names. Norm weights are 1; everything else (biases too) is N(0, std).
    """
    import numpy as np
    from mlx.utils import tree_flatten

    rng = np.random.default_rng(seed)
    weights = {}
    for name, p in sorted(tree_flatten(model.parameters())):
        if "norm" in name.rsplit(".", 2)[-2]:
            weights[name] = np.ones(p.shape, dtype=np.float32)
        else:
            weights[name] = (rng.standard_normal(p.shape) * std).astype(np.float32)
    return weights


def _dump_json(obj, path):
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def build_tiny_model(path, arch="llama", *, hidden_size=64, num_layers=2, num_heads=4,
                     num_kv_heads=2, intermediate_size=128, vocab_size=384, chat_template=True,
                     quantize_bits=None, tie_word_embeddings=False, seed=0,
                     corpus=None, config_overrides=None) -> pathlib.Path:
    """Write a tiny random HF-format model + tokenizer to ``path`` and return it as a Path.

    Args:
        path: output folder (created; stale ``model*.safetensors*`` files are removed).
        arch: ``"llama"`` or ``"qwen2"`` (qwen2 has q/k/v biases); also ``"mistral"``,
            ``"qwen3"``, ``"gemma2"``, ``"gemma3_text"`` (Gemma's embeddings are always tied) and ``"phi3"``
            (fused qkv / gate_up), float weights only.
        hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size: model shape.
        vocab_size: model vocab (``config.json``); the BPE tokenizer has at most this
            many tokens (fewer if the corpus is too small to learn enough merges).
            Must be >= 259 (256 byte tokens + 3 special tokens).
        chat_template: add a ChatML ``chat_template`` to ``tokenizer_config.json``;
            if False there is no template key at all.
        quantize_bits: None for float32 weights, or 4/8 for an mlx-community-style
            affine-quantized checkpoint (group size 64, or 32 if 64 doesn't divide
            ``hidden_size``); ``mlx_lm.load`` then returns ``QuantizedLinear`` layers.
        tie_word_embeddings: if True there is no ``lm_head.weight``.
        seed: numpy seed of the random weights.
        corpus: list of strings for tokenizer training (default: ``DEFAULT_CORPUS``).
        config_overrides: keys to set in ``config.json`` (e.g. a Gemma 3 sliding window).

    Special tokens: ``<|endoftext|>`` = 0 (bos/pad), ``<|im_start|>`` = 1,
    ``<|im_end|>`` = 2 (eos). ``generation_config.json`` lists eos ids ``[2, 0]``.
    """
    import mlx.core as mx
    from mlx_lm.utils import _get_classes, quantize_model, save_config, save_model

    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    if arch not in ("llama", "qwen2") and quantize_bits is not None:
        raise ValueError(f"quantize_bits is supported for llama and qwen2 only, not {arch!r}")
    if hidden_size % num_heads or num_heads % num_kv_heads:
        raise ValueError("need hidden_size % num_heads == 0 and num_heads % num_kv_heads == 0")
    if quantize_bits not in (None, 2, 3, 4, 5, 6, 8):
        raise ValueError(f"unsupported quantize_bits={quantize_bits!r}")
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for stale in list(path.glob("model*.safetensors")) + list(path.glob("model*.safetensors.index.json")):
        stale.unlink()

    # Tokenizer.
    tok = _train_tokenizer(DEFAULT_CORPUS if corpus is None else corpus, vocab_size)
    tok.save(str(path / "tokenizer.json"))
    _dump_json(_tokenizer_config(chat_template), path / "tokenizer_config.json")
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    bos_id, eos_id, pad_id = ids[BOS_TOKEN], ids[EOS_TOKEN], ids[PAD_TOKEN]

    # Config + generation config.
    config = _config(arch, vocab_size, hidden_size, num_layers, num_heads, num_kv_heads,
                     intermediate_size, tie_word_embeddings, bos_id, eos_id)
    config = dict(sorted({**config, **(config_overrides or {})}.items()))
    _dump_json({"bos_token_id": bos_id, "eos_token_id": [eos_id, pad_id], "pad_token_id": pad_id,
                "do_sample": False, "transformers_version": config["transformers_version"]},
               path / "generation_config.json")

    # Weights: instantiate the mlx-lm model for exact parameter names/shapes.
    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    weights = _random_weights(model, seed)
    if tie_word_embeddings:  # gemma3_text builds an lm_head and drops it when the checkpoint has none
        weights.pop("lm_head.weight", None)

    if quantize_bits is None:
        from safetensors.numpy import save_file

        save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
        _dump_json(config, path / "config.json")
    else:
        group_size = next((g for g in (64, 32) if hidden_size % g == 0), None)
        if group_size is None:
            raise ValueError("quantization needs hidden_size divisible by 32")
        model.load_weights([(k, mx.array(v)) for k, v in weights.items()], strict=True)
        with contextlib.redirect_stdout(io.StringIO()):  # quantize_model prints bpw
            model, qconfig = quantize_model(model, config, group_size, quantize_bits)
        save_model(path, model)  # model.safetensors + model.safetensors.index.json
        save_config(qconfig, path / "config.json")
    return path
