"""`mlx-dpo chat` and `generate`: answers from base + adapter (or the base alone)."""

from __future__ import annotations

import sys

from ..demo import model_or_default
from ..errors import UsageError
from ..model.generate import ChatSession, Sampling, TemplateRefused, load_for_generation, prompt_tokens, stream_answer
from .output import log


def _sampling(args) -> Sampling:
    s = Sampling(args.temperature, args.top_p, int(args.max_tokens), args.seed)
    if s.temperature < 0 or not 0 < s.top_p <= 1 or s.max_tokens < 1:
        raise UsageError("sampling: need --temperature >= 0, 0 < --top-p <= 1, --max-tokens >= 1")
    return s


def _template_kwargs(args) -> dict | None:
    """--chat-template-kwargs, else the run's own (config.yaml of --adapter RUN_DIR), so chat renders its
    prompts as the run trained on them."""
    from ..config import load_run_config, parse_template_kwargs

    text = getattr(args, "chat_template_kwargs", None)
    if text is None and args.adapter:
        text = load_run_config(args.adapter).get("chat_template_kwargs")
    return parse_template_kwargs(text) if text else None


def _load(args):
    args.model = model_or_default(args.model)
    if args.compare and not args.adapter:
        raise UsageError("--compare needs --adapter (it answers with and without it)")
    extra = _template_kwargs(args)  # checked before loading anything
    return load_for_generation(args.model, args.adapter, args.quantize, args.trust_remote_code, log=log,
                               template_kwargs=extra)


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


CHAT_HELP = """commands (they never reach the model):
  /reset            clear the conversation        /quit   leave (or Ctrl-D)
  /good, /bad       rate the last answer: an unpaired row in the --collect file
  /undo             remove the last saved row (if it is still the file's last)
  /help             this list"""
AB_HELP = """A/B commands (they never reach the model):
  /a, /b            pick the better answer: saves the pair, the chat goes on with it
  /tie              no preference: nothing saved, the chat goes on with A
  /both-bad         answer both sides again          /again a|b   answer one side again
  /edit a|b TEXT    save TEXT (your fix of that side's answer) as chosen, the other side as rejected
  /undo             remove the last saved row (if it is still the file's last)
  /reset, /quit, /help"""


def cmd_chat(args) -> int:
    sampling = _sampling(args)  # check the flags before loading anything
    collect = _collect_file(args)
    model, tokenizer, switch = _load(args)
    # A template that refuses any conversation (a tools template that needs `functions`) ends the chat
    # before it starts; one that refuses a particular message is said at that message.
    prompt_tokens(tokenizer, ([{"role": "system", "content": args.system}] if args.system else []) +
                  [{"role": "user", "content": "Hello!"}])
    if args.ab:
        return _chat_ab(args, model, tokenizer, switch, sampling, collect)
    sessions = {label: ChatSession(model, tokenizer, sampling, args.system) for label, _ in _variants(args, switch)}
    last: dict | None = None  # the last single answer, for /good and /bad
    saved: list[dict] = []  # rows this chat appended, for /undo
    for text in typed_lines("chat: type a message; /help lists the commands, /quit (or Ctrl-D) leaves"):
        if text == "/quit":
            break
        if text == "/reset":
            for s in sessions.values():
                s.reset()
            last = None
            print("(conversation cleared)", flush=True)
            continue
        if text.startswith("/"):
            if text in ("/good", "/bad") and collect is not None and last is not None and not args.compare:
                from ..data.preferences import unpaired_row

                row = unpaired_row(last["prompt"], last["answer"], text == "/good", **_meta(args, sampling))
                if _save(collect, row):
                    saved.append(row)
            elif text in ("/good", "/bad"):
                print("(/good and /bad rate the last answer of a single-answer chat with --collect FILE)", flush=True)
            elif text == "/undo":
                _undo(collect, saved)
            else:
                print(CHAT_HELP, flush=True)
            continue
        for label, enabled in _variants(args, switch):
            if switch:
                switch.set(enabled)
            session = sessions[label]
            print(f"{label or 'assistant'}> ", end="", flush=True)
            try:
                for piece in session.send(text):
                    sys.stdout.write(piece)
                    sys.stdout.flush()
            except TemplateRefused as e:  # not answered; the conversation stays as it was
                print(f"(not answered: {e})", flush=True)
                break
            sys.stdout.write("\n")
            last = {"prompt": session.messages[:-1], "answer": session.messages[-1]["content"]}
    return 0


def _undo(prefs, saved: list[dict]) -> None:
    """/undo: remove this chat's last saved row, if it is still the file's last line."""
    try:
        if prefs is None:
            print("(nothing to undo: this chat saves rows only with --collect FILE)", flush=True)
        elif saved and prefs.undo(saved[-1]):
            saved.pop()
            print(f"(removed the last row: {prefs.count()} row(s) in {prefs.path})", flush=True)
        else:
            print("(nothing to undo: no row of this chat is the file's last)", flush=True)
    except UsageError as e:  # the file could not be rewritten: said, and the chat goes on
        print(f"({e})", flush=True)


def typed_lines(greeting: str):
    """The user's non-empty lines until end of input: prompted on a terminal, read line by line from a pipe
    (so a chat can be scripted)."""
    interactive = sys.stdin.isatty()
    if interactive:
        log(greeting)
    while True:
        if interactive:
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            return
        if line.strip():
            yield line.strip()


def _collect_file(args):
    """The preference file of this chat (checked before the model loads), or None."""
    from datetime import datetime

    from ..data.preferences import PreferenceFile

    path = args.collect or (f"prefs/chat-{datetime.now():%Y%m%d}.jsonl" if args.ab else None)
    if path is None:
        return None
    prefs = PreferenceFile(path)
    n = prefs.count()  # a file that is not a preference file is refused here, never overwritten
    log(f"collecting preferences in {path} ({n} row(s) there)")
    return prefs


def _meta(args, sampling) -> dict:
    return {"model": args.model, "adapter": args.adapter,
            "sampling": {"temperature": sampling.temperature, "top_p": sampling.top_p,
                         "max_tokens": sampling.max_tokens}}


def _save(prefs, row) -> bool:
    """Append a row; a failed write is reported and the chat goes on (the row is not lost from view)."""
    try:
        prefs.append(row)
    except UsageError as e:
        print(f"(not saved: {e})", flush=True)
        return False
    print(f"(saved to {prefs.path}: {prefs.count()} row(s))", flush=True)
    return True


def _chat_ab(args, model, tokenizer, switch, sampling, prefs) -> int:
    """`chat --ab`: answers A and B to every message; /a, /b ... save preference pairs."""
    from ..model.ab import ABChat

    chat = ABChat(model, tokenizer, switch, sampling, args.ab_source, args.system,
                  seed=args.seed or 0, meta={"model": args.model, "adapter": args.adapter})
    saved: list[dict] = []

    def show(turn):
        for side in ("A", "B"):
            print(f"{side}: {turn.texts[side]}", flush=True)
        for side, why in turn.retried.items():
            was = "empty" if why[0] == "empty" else "the same as the other side"
            print(f"({side} was answered again: its first answer was {was})", flush=True)
        if turn.problem:
            print(f"(these answers cannot make a pair: {turn.problem}; /edit a|b TEXT or /tie)", flush=True)

    for text in typed_lines("chat --ab: type a message, then pick the better answer with /a or /b; /help lists "
                            "the commands"):
        word, _, rest = text.partition(" ")
        try:
            if not text.startswith("/"):
                show(chat.ask(text))
            elif word == "/quit":
                break
            elif word == "/reset":
                chat.reset()
                print("(conversation cleared)", flush=True)
            elif word in ("/a", "/b", "/edit"):
                side = word[1].upper() if word != "/edit" else rest.partition(" ")[0].upper()
                if side not in ("A", "B"):
                    raise UsageError("usage: /edit a|b TEXT")
                edited = rest.partition(" ")[2].strip() if word == "/edit" else None
                if word == "/edit" and not edited:
                    raise UsageError("usage: /edit a|b TEXT (the corrected answer)")
                turn = chat.pending
                row = chat.pair(side, edited)
                if not _save(prefs, row):
                    continue  # the answers wait: pick again (another file), edit, or /tie
                chat.commit(row)
                saved.append(row)
                print(f"(A was {turn.sources['A']}, B was {turn.sources['B']})", flush=True)
            elif word == "/tie":
                turn = chat.tie()
                print(f"(no preference saved; A was {turn.sources['A']}, B was {turn.sources['B']})", flush=True)
            elif word == "/both-bad":
                show(chat.regenerate())
            elif word == "/again":
                side = rest.strip().upper()
                if side not in ("A", "B"):
                    raise UsageError("usage: /again a|b")
                chat.regenerate(side)
                show(chat.pending)
            elif word == "/undo":
                _undo(prefs, saved)
            else:
                print(AB_HELP, flush=True)
        except UsageError as e:
            print(f"({e})", flush=True)
    return 0
