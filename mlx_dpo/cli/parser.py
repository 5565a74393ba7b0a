"""The `mlx-dpo` argument parser. Training flags are generated from TrainConfig's fields (one source of
truth for names, types and help); the other commands add their own.

Abbreviations are off: argparse would otherwise read `--lr 1e-4` as `--lr-schedule` ("invalid choice") and
`--epoch 2` as `--epochs` without a word. An unknown option is refused in one line that names the nearest
options of that command (`did you mean --learning-rate?`), exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import typing

from ..config import LOSS_PARAMS, TrainConfig, config_fields
from ..iterate.judges import JUDGE_TIMEOUT
from ..train.losses import help_lines

DATA_KEYS = ("prompt_key", "chosen_key", "rejected_key", "system_key", "split", "data_config", "data_revision",
             "skip_invalid", "min_score_margin", "score_keys")
LENGTHS = ("max_length", "max_prompt_length")
# TrainConfig fields `iterate` sets per round itself (or takes from its own flags of the same name)
ITERATE_OWNS = ("model", "data", "output", "init_adapter", "resume", "valid_data", "valid_split", "reference", "seed",
                "quantize", "prompt_key", "chosen_key", "rejected_key", "system_key", "split", "data_config",
                "data_revision", "skip_invalid", "min_score_margin", "score_keys")
LOSS_ARGS = ("loss", "loss_weights", *LOSS_PARAMS)  # the loss registry's settings (train/losses.py)


# Names other tools (mlx-lm, TRL, the transformers Trainer) use for an option, and ours.
ALIASES = {"lr": "learning-rate", "epoch": "epochs", "num-train-epochs": "epochs", "num-epochs": "epochs",
           "bs": "batch-size", "per-device-train-batch-size": "batch-size", "steps": "iters", "max-steps": "iters",
           "num-iters": "iters", "warmup": "warmup-steps", "max-seq-length": "max-length",
           "gradient-accumulation-steps": "grad-accum", "grad-accumulation-steps": "grad-accum",
           "gradient-checkpointing": "grad-checkpoint", "num-layers": "lora-layers", "rank": "lora-rank",
           "lora-r": "lora-rank", "adapter-path": "adapter", "resume-adapter-file": "init-adapter",
           "output-dir": "output", "out": "output", "train-data": "data", "dataset": "data",
           "eval-data": "valid-data", "eval-steps": "eval-every", "save-steps": "save-every",
           "logging-steps": "log-every", "loss-type": "loss", "max-new-tokens": "max-tokens", "temp": "temperature"}


class Parser(argparse.ArgumentParser):
    """argparse without abbreviations; an unknown option is one line naming the command's nearest ones."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = self._command(namespace)
            parser.exit(2, f"{parser.prog}: error: {unknown_arguments(parser, extras)}\n")
        return namespace

    def _command(self, namespace) -> argparse.ArgumentParser:
        """The parser of the command given (whose options the unknown ones are compared with), else this one."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action.choices.get(getattr(namespace, action.dest, None), self)
        return self


def unknown_arguments(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """The error text for arguments `parser` does not take: each unknown option with its nearest known ones."""
    options = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    unknown = [x.partition("=")[0] for x in extras if x.startswith("-") and len(x) > 1 and not _is_number(x)]
    listed = f"{parser.prog} --help lists its options"
    if not unknown:
        return f"unrecognized arguments: {' '.join(extras)} ({listed})"
    said = []
    for opt in unknown:
        near = nearest_options(opt, options)
        said.append((opt, f"did you mean {' or '.join([', '.join(near[:-1]), near[-1]] if len(near) > 2 else near)}?"
                        if near else ""))
    if len(said) == 1:
        opt, hint = said[0]
        return f"unknown option {opt}; {hint} ({listed})" if hint else f"unknown option {opt} ({listed})"
    return "unknown options " + ", ".join(f"{o} ({h})" if h else o for o, h in said) + f"; {listed}"


def nearest_options(opt: str, options: list[str], n: int = 3) -> list[str]:
    """Known options `opt` may mean: the one it is another tool's name for or spells with underscores;
    else those it begins (what argparse's abbreviations took); else the most alike (difflib)."""
    name = opt.lstrip("-").replace("_", "-").lower()
    names = [o[2:] for o in options]
    for exact in (ALIASES.get(name), name):
        if exact in names:
            return ["--" + exact]
    out = [x for x in names if x.startswith(name)] or difflib.get_close_matches(name, names, n=n, cutoff=0.6)
    return ["--" + x for x in out[:n]]


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _add_config_args(parser: argparse.ArgumentParser, names=None) -> None:
    """Add --flag for each TrainConfig field (all, or `names`); absent flags stay absent (SUPPRESS)."""
    hints = typing.get_type_hints(TrainConfig)
    for f in config_fields():
        if names is not None and f.name not in names:
            continue
        flag = "--" + f.name.replace("_", "-")
        meta = f.metadata
        default = f" (default: {f.default})" if f.default not in (None, False) else ""
        # argparse %-formats help strings: a literal "%" must be doubled
        kw = {"dest": f.name, "default": argparse.SUPPRESS, "help": (meta["help"] + default).replace("%", "%%")}
        hint = hints[f.name]
        base = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        kind = base[0]
        if kind is bool:  # on-by-default switches get a --no-... form
            parser.add_argument(flag, action=argparse.BooleanOptionalAction if f.default else "store_true", **kw)
            continue
        if kind is list or getattr(kind, "__origin__", None) is list:
            kw["nargs"] = "+"
        else:
            kw["type"] = kind if kind in (int, float) else str
        if "choices" in meta:
            kw["choices"] = meta["choices"]
        parser.add_argument(flag, **kw)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="mlx-dpo", description="Direct Preference Optimization of LoRA adapters with MLX. "
                                "Run without arguments (or `mlx-dpo tui`) to open the terminal app.")
    sub = p.add_subparsers(dest="command")

    v = sub.add_parser("validate", help="check a pairs file; print counts and token-length statistics")
    v.add_argument("file", help="pairs file (.jsonl, .json, .parquet, .csv, .tsv), dataset folder or hub dataset id "
                                "ORG/NAME")
    v.add_argument("--json", action="store_true", help="print the report as one JSON object")
    v.add_argument("--show", type=int, default=0, metavar="N",
                   help="print the first N pairs as the model sees them (needs --model): system, prompt, the "
                        "boundary marker, chosen and rejected with their end tokens (--json: the 'shown' list)")
    _add_config_args(v, ("model", "trust_remote_code", "chat_template_kwargs") + DATA_KEYS + LENGTHS)

    t = sub.add_parser("train", help="train a DPO LoRA adapter", formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="losses (--loss), and when to use each:\n" + help_lines())
    t.add_argument("--config", help="YAML file with the same keys as the flags (flags win)")
    t.add_argument("--events", action="store_true",
                   help="report progress as JSON lines on stdout instead of log lines on stderr (for programs; "
                        "the app uses it)")
    _add_config_args(t)

    es = sub.add_parser("estimate", help="the memory a training run needs (from the data's token lengths) and whether "
                                         "it fits; settings that fit when it does not. Takes train's flags",
                        description="Estimate the memory `mlx-dpo train` with the same flags would need at its peak "
                                    "(no weights are loaded: the model's config.json and tokenizer, and the data's "
                                    "token lengths), compare it with a budget and, when it does not fit, re-estimate "
                                    "changed settings and print those that fit. Exit 0 either way.")
    es.add_argument("--config", help="YAML file with the same keys as the flags (flags win)")
    es.add_argument("--memory", metavar="SIZE",
                    help="estimate for a Mac with this much RAM: 16GB, 16G or 16 (GB); the budget is that less what "
                         "macOS and an open app keep (2 GB, or 1/8 of the RAM above 16 GB) (default: this machine's: "
                         "Metal's recommended working set on a Mac, else RAM less the same reserve; "
                         "$MLX_DPO_MEMORY_BUDGET, bytes or a size such as 16GB, sets it)")
    es.add_argument("--json", action="store_true", help="print the estimate as one JSON object (terms in bytes, "
                    "peak_gb, fits, batch, suggestions: [{flags, peak_gb}])")
    _add_config_args(es)

    e = sub.add_parser("eval", help="DPO loss and reward metrics of an adapter on a pairs file")
    e.add_argument("--adapter", help="run dir or adapter folder (omit to evaluate the base model)")
    e.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    g = e.add_argument_group("behaviour (--generate): answers scored by the demo tasks' ground-truth reward")
    g.add_argument("--generate", action="store_true",
                   help="also generate answers for the file's prompts with base and base + adapter and score them")
    g.add_argument("--limit", type=int, help="at most this many prompts")
    g.add_argument("--temperature", type=float, default=0.0, help="decoding temperature (default 0: greedy)")
    g.add_argument("--max-tokens", type=int, default=64, help="new tokens per answer (default 64)")
    g.add_argument("--kl-samples", type=int, default=1, help="answers sampled per prompt for the KL estimate")
    g.add_argument("--seed", type=int, default=0, help="sampling seed")
    g.add_argument("--show", type=int, default=3, help="example answers to print")
    _add_config_args(e, ("model", "data", "quantize", "trust_remote_code", "batch_size", "pad_multiple",
                         "cache_dir", "init_adapter", "reference", "cpu_dequant_matmul", "chat_template_kwargs",
                         "tokens_per_batch") + DATA_KEYS + LENGTHS + LOSS_ARGS)

    f = sub.add_parser("frontier", help="train one adapter per beta and plot ground-truth reward against KL")
    f.add_argument("--model", help="base model (default: the bundled demo model)")
    f.add_argument("--data", required=True, help="training pairs")
    f.add_argument("--valid-data", required=True, help="held-out pairs whose prompts are answered and scored")
    f.add_argument("--betas", type=float, nargs="+", default=[0.05, 0.1, 0.3, 1.0])
    f.add_argument("--output", required=True, help="folder for the runs and the plot")
    f.add_argument("--iters", type=int, default=24)
    f.add_argument("--learning-rate", type=float, default=5e-4)
    f.add_argument("--limit", type=int, default=30, help="held-out prompts to score")
    f.add_argument("--json", action="store_true")

    it = sub.add_parser("iterate", help="iterative DPO: the model answers prompts, a judge ranks the answers, it trains "
                                        "on best vs worst, round after round (each round a run dir)")
    it.add_argument("--model", help="base model (default: the bundled demo model)")
    it.add_argument("--prompts", required=True, help="JSONL of prompts (strings, {prompt, system} or {messages}), or a "
                    "pairs file whose prompts are used")
    it.add_argument("--judge", required=True, metavar="JUDGE",
                    help="python:MODULE:FUNCTION or FILE.py:FUNCTION (f(messages, answer) -> number, higher is "
                         "better; the demo's: python:mlx_dpo.demo.reward:judge), model:PATH_OR_ID (a judge LLM "
                         "compares two answers, both orders) or human (you pick in the terminal)")
    it.add_argument("--output", required=True, help="folder of the iteration: round_N run dirs and rounds.jsonl; "
                    "run the same command again to continue it")
    it.add_argument("--rounds", type=int, default=3, help="rounds to run (default 3; raise it to add rounds)")
    it.add_argument("--samples", type=int, default=4, help="answers per prompt and round (default 4)")
    it.add_argument("--valid-prompts", help="held-out prompts answered (greedy) and judged after every round")
    it.add_argument("--reference", choices=("base", "previous"), default="base",
                    help="reference model of each round's loss: the base (default) or the previous round's policy")
    it.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    it.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling (default 1: off)")
    it.add_argument("--max-tokens", type=int, default=128, help="new tokens per answer (default 128)")
    it.add_argument("--min-spread", type=float, default=0.0,
                    help="skip a prompt whose best and worst scores differ by less than this (ties are always skipped)")
    it.add_argument("--judge-prompt", metavar="FILE", help="a model judge's prompt: text with {prompt}, {answer_a} "
                    "and {answer_b} (default: shown in the README)")
    it.add_argument("--judge-timeout", type=float, default=JUDGE_TIMEOUT, metavar="SECONDS",
                    help=f"a python judge's call that has not returned after this long stops the round, naming the "
                         f"prompt (default {JUDGE_TIMEOUT:g}; 0: no limit; a re-run continues from that prompt)")
    it.add_argument("--seed", type=int, default=0, help="seed of sampling, data order and LoRA init (default 0)")
    it.add_argument("--limit", type=int, help="use only the first N prompts")
    it.add_argument("--prompts-per-round", type=int, help="each round answers the next N prompts of the file "
                    "(wrapping around; default: every round answers all of them)")
    it.add_argument("--valid-limit", type=int, help="use only the first N held-out prompts")
    it.add_argument("--init-adapter", help="round 1 starts from this adapter (default: a new one)")
    it.add_argument("--kl-samples", type=int, default=1,
                    help="answers sampled per held-out prompt for the KL-to-base estimate (default 1; 0: none)")
    it.add_argument("--eval-temperature", type=float, default=0.0,
                    help="held-out answers: greedy (0, the default) or sampled at this temperature (seeded)")
    it.add_argument("--quantize", type=int, choices=(4, 8), help="quantize the base on load")
    it.add_argument("--json", action="store_true", help="print the round reports as one JSON list on stdout")
    it.add_argument("--events", action="store_true", help="report progress as JSON lines on stdout (for programs)")
    tg = it.add_argument_group("training of each round (the flags of `mlx-dpo train`)")
    _add_config_args(tg, [f.name for f in config_fields() if f.name not in ITERATE_OWNS])

    cp = sub.add_parser("compare", help="did it get better? answer prompts with the adapter and with the base (or "
                                        "another run), let a judge decide: wins, ties, losses, win rate with a 95%% "
                                        "interval")
    cp.add_argument("--adapter", required=True, help="run dir or adapter folder: side A")
    cp.add_argument("--against", default="base", metavar="base|RUN",
                    help="side B: the base model (default) or another run dir / adapter folder")
    cp.add_argument("--prompts", help="JSONL of prompts (strings, {prompt, system} or {messages}), or a pairs file "
                    "whose prompts are used (default: the run's held-out data)")
    cp.add_argument("--judge", required=True, metavar="JUDGE",
                    help="python:MODULE:FUNCTION or FILE.py:FUNCTION (f(messages, answer) -> number, higher is "
                         "better; the demo's: python:mlx_dpo.demo.reward:judge), model:PATH_OR_ID (a judge LLM, "
                         "asked in both orders) or human (you pick, blind: the sides are shuffled)")
    cp.add_argument("--judge-prompt", metavar="FILE", help="a model judge's prompt: text with {prompt}, {answer_a} "
                    "and {answer_b}")
    cp.add_argument("--model", help="base model (default: the one the run trained, else the bundled demo model)")
    cp.add_argument("--samples", type=int, default=1, help="answers per prompt and side (default 1: greedy)")
    cp.add_argument("--temperature", type=float, help="sampling temperature (default 0 for one sample, 0.8 for more)")
    cp.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling (default 1: off)")
    cp.add_argument("--max-tokens", type=int, default=128, help="new tokens per answer (default 128)")
    cp.add_argument("--limit", type=int, help="use only the first N prompts")
    cp.add_argument("--seed", type=int, default=0, help="seed of sampling and of the blind order (default 0)")
    cp.add_argument("--output", help="the verdicts file (default: RUN/compare-vs-<base|RUN2>-<date-time>.jsonl)")
    cp.add_argument("--quantize", type=int, choices=(4, 8), help="quantize the base on load (default: as the run)")
    cp.add_argument("--show", type=int, default=3, help="largest wins and losses to show (default 3)")
    cp.add_argument("--json", action="store_true", help="print the result as one JSON object")

    for name, help_ in (("chat", "chat with base + adapter in the terminal (/reset, /quit)"),
                        ("generate", "print one completion for --prompt")):
        c = sub.add_parser(name, help=help_)
        _add_model_args(c)
        _add_config_args(c, ("chat_template_kwargs",))
        _add_sampling_args(c)
        c.add_argument("--system", help="system message")
        c.add_argument("--compare", action="store_true",
                       help="answer with the base model and with base + adapter, one after the other")
        if name == "generate":
            c.add_argument("--prompt", required=True, help="the user message")
        else:
            c.add_argument("--ab", action="store_true",
                           help="answer every message twice (A and B, sides shuffled); pick the better with /a or /b "
                                "to save a preference pair (see /help)")
            c.add_argument("--ab-source", default="base", metavar="base|samples|ADAPTER_DIR",
                           help="what A and B are: base + adapter vs the base (default), two samples of the model, "
                                "or base + adapter vs base + another adapter")
            c.add_argument("--collect", metavar="FILE",
                           help="preference file the picks (and /good, /bad) are appended to "
                                "(default with --ab: prefs/chat-DATE.jsonl)")

    x = sub.add_parser("export", help="export an adapter: fused HF model, PEFT adapter, mlx-lm folder or GGUF "
                                      "(llama.cpp, Ollama, LM Studio); verified")
    _add_model_args(x, adapter_required=True)
    x.add_argument("--output", required=True, help="new folder to write (must not exist)")
    x.add_argument("--format", choices=("hf", "peft", "mlx", "gguf", "gguf-lora"), default="hf",
                   help="default: hf (fused, dequantized); gguf-lora: the adapter alone as a llama.cpp LoRA GGUF "
                        "plus its base (f16, or --gguf-base) and a Modelfile; gguf: the fused model as one .gguf "
                        "file with an Ollama "
                        "Modelfile, checked in llama.cpp when llama-cpp-python is installed")
    x.add_argument("--gguf-type", choices=("f16", "bf16", "q8_0", "q4_k_m", "q5_k_m", "q6_k", "q4_0"), default="f16",
                   help="--format gguf tensor type (default f16; q8_0 and the k-quants are quantized: their drift is "
                        "reported; q4_k_m, q5_k_m, q6_k, q4_0 come from llama.cpp's quantizer, llama-cpp-python)")
    x.add_argument("--gguf-base", metavar="FILE",
                   help="--format gguf-lora: an existing GGUF of the same base to pair the adapter with "
                        "(default: export the base as f16 beside it)")
    x.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), help="tensor dtype (default: the base's)")
    x.add_argument("--quantize", type=int, choices=(4, 8), help="re-quantize the fused hf model for MLX use")
    x.add_argument("--no-verify", dest="verify", action="store_false", help="skip the reload-and-compare check")
    x.add_argument("--push-to-hub", metavar="REPO", help="upload OUT to this Hugging Face repo")

    sub.add_parser("tui", help="open the terminal app (the same as `mlx-dpo` with no arguments)")

    d = sub.add_parser("demo", help="the scripted demo on the bundled model and pairs: validate, train, evaluate")
    d.add_argument("--output", help="run dir to create (default: runs/demo-DATE-TIME)")
    return p


def _add_model_args(p, adapter_required=False):
    p.add_argument("--model", help="local HF-format folder or hub id of the base model (default: the bundled demo model)")
    p.add_argument("--adapter", required=adapter_required, help="run dir or adapter folder")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model folder to run its own code")
    if not adapter_required:
        p.add_argument("--quantize", type=int, choices=(4, 8), help="quantize the base on load")


def _add_sampling_args(p):
    from ..model.generate import Sampling

    for f in dataclasses.fields(Sampling):
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=float if f.type == "float" else int,
                       default=f.default, help=f.metadata["help"] + f" (default: {f.default})")
