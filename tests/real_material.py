"""Real vocabularies and chat templates, offline, for tests: tiny random-weight models that carry them.

The llama-cpp-python source distribution (a PyPI package; never built here) vendors llama.cpp, whose
`models/` folder holds real vocabularies (`ggml-vocab-*.gguf`) and the chat templates of popular models
(`models/templates/*.jinja`). :func:`material_dir` downloads it once with pip and keeps the extracted
files under ``$MLX_DPO_TEST_CACHE`` (default ``~/.cache/mlx-dpo-test``); :func:`tokenizer_dir` converts
a family's GGUF vocabulary into ``tokenizer.json`` once (transformers' ``gguf_file=``; tens of seconds
for a 150k vocabulary) and caches it too. :func:`build_real_model` writes a model folder as a real
checkpoint lays it out: config.json and generation_config.json with the family's end-of-turn ids, the
real tokenizer files and template, and seeded random weights of a tiny llama/qwen2 of that vocabulary.

Where the vendored vocabulary lacks a family's added tokens (the GGUF vocab files carry the base
vocabulary only), they are added with their real strings; where the family's own vocabulary is not
vendored, the nearest real one stands in (noted per family).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tiny_models import build_tiny_model

PACKAGE, VERSION = "llama-cpp-python", "0.3.36"
MODELS = "vendor/llama.cpp/models/"


class Unavailable(Exception):
    """The package index could not be reached (the tests that need the material are skipped)."""


@dataclass(frozen=True)
class Family:
    vocab: str                  # ggml-vocab-<vocab>.gguf
    template: str | None        # models/templates/<template>.jinja; None: a base model without one
    arch: str = "llama"
    bos: str | None = None      # tokenizer bos/eos as in the real tokenizer_config.json (None: keep GGUF's)
    eos: str | None = None
    stop: tuple = ()            # generation_config eos_token_id, by token string
    added: tuple = ()           # (token, special) added on top of the GGUF vocabulary
    renamed: dict = field(default_factory=dict)  # GGUF token -> the family's name for the same slot
    note: str = ""

    @property
    def end(self) -> str:
        """The end-of-turn token every completion must end with."""
        return self.stop[0] if self.stop else self.eos


THINK = (("<think>", False), ("</think>", False))
R1 = (("<｜begin▁of▁sentence｜>", True), ("<｜end▁of▁sentence｜>", True), ("<｜User｜>", False),
      ("<｜Assistant｜>", False)) + THINK
LLAMA3_STOP = ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>")
# The vendored vocabulary is Llama 3.0's; 3.1 named three of its reserved slots.
LLAMA31 = {"<|reserved_special_token_2|>": "<|finetune_right_pad_id|>", "<|reserved_special_token_4|>": "<|eom_id|>",
           "<|reserved_special_token_5|>": "<|python_tag|>"}

FAMILIES = {
    "llama-3.1": Family("llama-bpe", "meta-llama-Llama-3.1-8B-Instruct", eos="<|eot_id|>", stop=LLAMA3_STOP,
                        renamed=LLAMA31),
    "llama-3.2": Family("llama-bpe", "meta-llama-Llama-3.2-3B-Instruct", eos="<|eot_id|>", stop=LLAMA3_STOP,
                        renamed=LLAMA31),
    "qwen2.5": Family("qwen2", "Qwen-Qwen2.5-7B-Instruct", arch="qwen2", eos="<|im_end|>",
                      stop=("<|im_end|>", "<|endoftext|>")),
    "qwen3": Family("qwen35", "Qwen-Qwen3-0.6B", arch="qwen2", eos="<|im_end|>", stop=("<|im_end|>", "<|endoftext|>"),
                    added=THINK + (("<tool_call>", False), ("</tool_call>", False))),
    "qwq": Family("qwen2", "Qwen-QwQ-32B", arch="qwen2", eos="<|im_end|>", stop=("<|im_end|>", "<|endoftext|>"),
                  added=THINK),
    "deepseek-r1-qwen": Family("qwen2", "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", arch="qwen2",
                               bos="<｜begin▁of▁sentence｜>", eos="<｜end▁of▁sentence｜>",
                               stop=("<｜end▁of▁sentence｜>",), added=R1),
    "gemma-2": Family("gemma-4", "google-gemma-2-2b-it", bos="<bos>", eos="<eos>", stop=("<end_of_turn>", "<eos>"),
                      renamed={"<|turn>": "<start_of_turn>", "<turn|>": "<end_of_turn>"},
                      note="Gemma 4's vocabulary with its turn tokens under Gemma 2/3's names (same ids 105/106 "
                           "as Gemma 3); Gemma 2's own vocabulary is not vendored"),
    "mistral-nemo": Family("llama-spm", "mistralai-Mistral-Nemo-Instruct-2407", bos="<s>", eos="</s>", stop=("</s>",),
                           added=(("[INST]", True), ("[/INST]", True)),
                           note="a Mistral/Llama-2 SentencePiece vocabulary stands in for Nemo's Tekken"),
    "phi-3.5": Family("phi-3", "microsoft-Phi-3.5-mini-instruct", eos="<|endoftext|>",
                      stop=("<|end|>", "<|assistant|>", "<|endoftext|>")),
    "base-gpt2": Family("gpt-2", None, stop=("<|endoftext|>",)),
    # Nothing follows an answer in GLM's template: the model stops on the next <|user|> (generation config).
    "glm-4.6": Family("qwen2", "GLM-4.6", arch="qwen2", eos="<|endoftext|>",
                      stop=("<|endoftext|>", "<|user|>", "<|observation|>"),
                      added=(("[gMASK]", True), ("<sop>", True), ("<|system|>", True), ("<|user|>", True),
                             ("<|assistant|>", True), ("<|observation|>", True)) + THINK,
                      note="Qwen2's vocabulary stands in for GLM's (not vendored), with GLM's added tokens"),
}


def cache_root() -> Path:
    return Path(os.environ.get("MLX_DPO_TEST_CACHE") or Path.home() / ".cache" / "mlx-dpo-test")


def material_dir() -> Path:
    """The extracted `vendor/llama.cpp/models/` folder (vocabularies and templates), fetched once."""
    root = cache_root() / f"{PACKAGE}-{VERSION}"
    done = root / ".complete"
    if done.exists():
        return root / "models"
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
               f"{PACKAGE}=={VERSION}", "-d", tmp]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            raise Unavailable(f"pip download {PACKAGE}=={VERSION} took over 15 minutes") from None
        sdists = list(Path(tmp).glob("*.tar.gz"))
        if r.returncode or not sdists:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
            raise Unavailable(f"pip download {PACKAGE}=={VERSION} failed: {tail[0]}")
        out = root / "models"
        with tarfile.open(sdists[0]) as tar:
            for member in tar:
                rel = member.name.split("/", 1)[-1]
                if not member.isfile() or not rel.startswith(MODELS):
                    continue
                rel = rel[len(MODELS):]
                if not (rel.startswith("templates/") or (rel.startswith("ggml-vocab-") and rel.endswith(".gguf"))):
                    continue
                dest = out / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(dest, "wb") as f:
                    shutil.copyfileobj(src, f)
    done.write_text(f"{PACKAGE}=={VERSION}\n")
    return root / "models"


def template_text(name: str) -> str:
    return (material_dir() / "templates" / f"{name}.jinja").read_text(encoding="utf-8")


def _gguf_tokenizer(path: Path):
    """A transformers fast tokenizer from a GGUF vocabulary."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception:
        # Newer architectures (gemma4) fail in transformers' GGUF *model* config while the vocabulary
        # converts fine: convert it directly.
        from transformers.integrations.gguf import convert_gguf_tokenizer, get_gguf_tokenizer

        arch, tokenizer_dict, config = get_gguf_tokenizer(str(path))
        fast, extra = convert_gguf_tokenizer(arch, tokenizer_dict)
        keep = {k: v for k, v in config.items() if k in ("bos_token", "eos_token", "unk_token", "pad_token")}
        return PreTrainedTokenizerFast(tokenizer_object=fast, **keep, **extra)


def _rename_tokens(folder: Path, renamed: dict) -> None:
    """Give existing token slots the family's names (vocab, added tokens) in a saved tokenizer.json."""
    path = folder / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    for old, new in renamed.items():
        if isinstance(vocab, dict):
            vocab[new] = vocab.pop(old)
        else:  # unigram: [[piece, score], ...]
            for entry in vocab:
                if entry[0] == old:
                    entry[0] = new
        for tok in data.get("added_tokens", []):
            if tok["content"] == old:
                tok["content"] = new
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _vocab_dir(vocab: str) -> Path:
    """ggml-vocab-<vocab>.gguf converted to tokenizer files once (the slow step), shared by families."""
    folder = cache_root() / "tokenizers" / f"vocab-{vocab}-{VERSION}"
    if not (folder / ".complete").exists():
        tok = _gguf_tokenizer(material_dir() / f"ggml-vocab-{vocab}.gguf")
        tok.chat_template = None
        _publish(folder, tok.save_pretrained)
    return folder


def _publish(folder: Path, write) -> None:
    """write(tmp) into a fresh folder, then move it into place whole (an interrupted run leaves nothing)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent))
    try:
        write(str(tmp))
        (tmp / ".complete").write_text("")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def tokenizer_dir(name: str) -> Path:
    """The family's tokenizer files (tokenizer.json, tokenizer_config.json, chat template), cached."""
    fam = FAMILIES[name]
    folder = cache_root() / "tokenizers" / f"{name}-{VERSION}"
    if (folder / ".complete").exists():
        return folder
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    base = _vocab_dir(fam.vocab)
    with tempfile.TemporaryDirectory(dir=base.parent) as tmp:
        for f in base.iterdir():
            shutil.copy(f, Path(tmp) / f.name)
        if fam.renamed:
            _rename_tokens(Path(tmp), fam.renamed)
        tok = AutoTokenizer.from_pretrained(tmp)
    for text, special in fam.added:
        if text not in tok.get_vocab():
            tok.add_tokens([AddedToken(text, special=special, normalized=False)], special_tokens=special)
    for text in fam.stop:
        assert text in tok.get_vocab(), f"{name}: {text} is not in the vocabulary"
    if fam.bos:
        tok.bos_token = fam.bos
    if fam.eos:
        tok.eos_token = fam.eos
    tok.chat_template = template_text(fam.template) if fam.template else None
    _publish(folder, tok.save_pretrained)
    return folder


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "vocab.json", "merges.txt")


def _meta(name: str) -> dict:
    """Vocabulary size and special ids of the family's tokenizer, cached beside it (loading it is slow)."""
    path = tokenizer_dir(name) / "meta.json"
    if not path.exists():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(path.parent))
        ids = tok.convert_tokens_to_ids
        meta = {"vocab_size": len(tok), "bos_id": tok.bos_token_id, "pad_id": tok.pad_token_id,
                "stop_ids": [ids(t) for t in FAMILIES[name].stop]}
        path.write_text(json.dumps(meta))
    return json.loads(path.read_text())


def build_real_model(name: str, path, *, template: str | None = None, hidden_size: int = 32) -> Path:
    """A tiny random-weight model folder that carries family `name`'s real tokenizer and chat template.

    `template` replaces the family's template text (e.g. a variant of it)."""
    fam, src, meta = FAMILIES[name], tokenizer_dir(name), _meta(name)
    vocab = -(-meta["vocab_size"] // 64) * 64
    path = build_tiny_model(Path(path), arch=fam.arch, hidden_size=hidden_size, num_layers=1, num_heads=2,
                            num_kv_heads=1, intermediate_size=2 * hidden_size, vocab_size=vocab,
                            tie_word_embeddings=True, corpus=["a b"])
    for f in TOKENIZER_FILES:
        (path / f).unlink(missing_ok=True)
        if (src / f).exists():
            shutil.copy(src / f, path / f)
    if template is not None:
        (path / "chat_template.jinja").write_text(template, encoding="utf-8")
    stop = meta["stop_ids"]
    config = json.loads((path / "config.json").read_text())
    config.update(bos_token_id=meta["bos_id"], eos_token_id=stop[0] if len(stop) == 1 else stop)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    gen = json.loads((path / "generation_config.json").read_text())
    gen.update(bos_token_id=meta["bos_id"], eos_token_id=stop, pad_token_id=meta["pad_id"])
    (path / "generation_config.json").write_text(json.dumps(gen, indent=2))
    return path
