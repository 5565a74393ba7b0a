"""`mlx-dpo chat` and `generate`: answers from base + adapter (or the base alone)."""

from __future__ import annotations

import sys

from ..demo import model_or_default
from ..errors import UsageError
from ..model.generate import ChatSession, Sampling, load_for_generation, stream_answer
from .output import log


def _sampling(args) -> Sampling:
    s = Sampling(args.temperature, args.top_p, int(args.max_tokens), args.seed)
    if s.temperature < 0 or not 0 < s.top_p <= 1 or s.max_tokens < 1:
        raise UsageError("sampling: need --temperature >= 0, 0 < --top-p <= 1, --max-tokens >= 1")
    return s


def _load(args):
    args.model = model_or_default(args.model)
    if args.compare and not args.adapter:
        raise UsageError("--compare needs --adapter (it answers with and without it)")
    return load_for_generation(args.model, args.adapter, args.quantize, args.trust_remote_code, log=log)


def _variants(args, switch):
    """(label, adapter on?) for each answer to give."""
    if args.compare:
        return [("base", False), ("tuned", True)]
    return [(None, switch is not None)]


def _stream(model, tokenizer, messages, sampling, out) -> str:
    pieces = []
    for piece in stream_answer(model, tokenizer, messages, sampling):
        pieces.append(piece)
        out.write(piece)
        out.flush()
    out.write("\n")
    return "".join(pieces)


def cmd_generate(args) -> int:
    sampling = _sampling(args)  # check the flags before loading anything
    model, tokenizer, switch = _load(args)
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + \
        [{"role": "user", "content": args.prompt}]
    for label, enabled in _variants(args, switch):
        if switch:
            switch.set(enabled)
        if label:
            print(f"=== {label} {'(base + adapter)' if enabled else '(adapter off)'} ===", flush=True)
        _stream(model, tokenizer, messages, sampling, sys.stdout)
    return 0


def cmd_chat(args) -> int:
    sampling = _sampling(args)  # check the flags before loading anything
    model, tokenizer, switch = _load(args)
    sessions = {label: ChatSession(model, tokenizer, sampling, args.system) for label, _ in _variants(args, switch)}
    interactive = sys.stdin.isatty()
    if interactive:
        log("chat: type a message; /reset clears the conversation, /quit (or Ctrl-D) leaves")
    while True:
        if interactive:
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text == "/quit":
            break
        if text == "/reset":
            for s in sessions.values():
                s.reset()
            print("(conversation cleared)", flush=True)
            continue
        for label, enabled in _variants(args, switch):
            if switch:
                switch.set(enabled)
            session = sessions[label]
            print(f"{label or 'assistant'}> ", end="", flush=True)
            for piece in session.send(text):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
    return 0
