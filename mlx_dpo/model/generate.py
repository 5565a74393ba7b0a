"""Chat and generation with base + adapter, on mlx-lm's stream_generate (samplers, KV cache).

The adapter can be switched off and on in place (`adapters.AdapterSwitch`), so base and tuned answers
come from one loaded model: "off" loads the adapter's identity values (LoRA B = 0, DoRA magnitude =
the base weight norm), which make every adapted layer compute exactly the base layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import mlx.core as mx

from .adapters import AdapterSwitch, apply_lora, read_adapter_config
from .load import load_base
from ..data.template import chat_prompt_text, has_chat_template, set_render_options
from ..errors import UsageError, first_line


@dataclass
class Sampling:
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature (0 = greedy)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling: keep the smallest set of tokens with this much probability."})
    max_tokens: int = field(default=256, metadata={"help": "Maximum new tokens per answer."})
    seed: int | None = field(default=None, metadata={"help": "Seed for reproducible sampling."})


def load_for_generation(model: str, adapter: str | None = None, quantize: int | None = None,
                        trust_remote_code: bool = False, log=print, template_kwargs: dict | None = None):
    """Return (model, tokenizer, AdapterSwitch or None). `template_kwargs` (--chat-template-kwargs) are
    passed to every render of the chat template, as training renders its prompts."""
    loaded = load_base(model, quantize, trust_remote_code, log=log)
    if template_kwargs:
        set_render_options(loaded.tokenizer, template_kwargs=template_kwargs)
    switch = None
    if adapter:
        # Freshly added layers are the identity (B = 0; DoRA m = ||W||): the switch keeps them as "off".
        apply_lora(loaded.model, read_adapter_config(adapter))
        switch = AdapterSwitch.load(loaded.model, adapter)
    loaded.model.eval()
    return loaded.model, loaded.tokenizer, switch


class TemplateRefused(UsageError):
    """The model's chat template raised on a conversation (as `validate` reports a pair's `template` problem)."""


def prompt_tokens(tokenizer, messages: list[dict]) -> list[int]:
    """The prompt exactly as training renders it (data.template): the chat template with the generation
    prompt (system text folded where the template refuses it), or plain text without a template.

    A template that raises (a tools template that needs `functions`, a role order it refuses) is
    TemplateRefused, one line, not a Jinja traceback."""
    templated = has_chat_template(tokenizer)
    try:
        text = chat_prompt_text(tokenizer, messages)
    except Exception as e:  # jinja2's TemplateError / UndefinedError, or what raise_exception() raised
        roles = ", ".join(m["role"] for m in messages)
        raise TemplateRefused(f"chat template: rendering failed: {first_line(e)}; the model's chat template "
                              f"refuses this conversation (roles: {roles}): change the conversation, or use a model "
                              "whose template renders it (tokenizer_config.json or chat_template.jinja)") from None
    return list(tokenizer.encode(text, add_special_tokens=not templated))


def stream_answer(model, tokenizer, messages: list[dict], sampling: Sampling) -> Iterator[str]:
    """Yield the answer's text pieces as they are generated (TemplateRefused before the first)."""
    yield from stream_tokens(model, tokenizer, prompt_tokens(tokenizer, messages), sampling)


def stream_tokens(model, tokenizer, prompt: list[int], sampling: Sampling) -> Iterator[str]:
    """Yield the text pieces of the answer to the prompt `prompt` (token ids) as they are generated."""
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_sampler

    if sampling.seed is not None:
        mx.random.seed(sampling.seed)
    sampler = make_sampler(temp=sampling.temperature, top_p=sampling.top_p if sampling.top_p < 1.0 else 0.0)
    for response in stream_generate(model, tokenizer, prompt, max_tokens=sampling.max_tokens, sampler=sampler):
        if response.text:
            yield response.text


def answer(model, tokenizer, messages: list[dict], sampling: Sampling) -> str:
    return "".join(stream_answer(model, tokenizer, messages, sampling))


class ChatSession:
    """A multi-turn conversation: history, optional system message, reset."""

    def __init__(self, model, tokenizer, sampling: Sampling, system: str | None = None):
        self.model, self.tokenizer, self.sampling, self.system = model, tokenizer, sampling, system
        self.reset()

    def reset(self) -> None:
        self.messages: list[dict] = [{"role": "system", "content": self.system}] if self.system else []

    def send(self, text: str) -> Iterator[str]:
        """Stream the reply to `text`; the full reply joins the history when the stream ends. A template
        that refuses the conversation raises TemplateRefused and leaves the history as it was."""
        turn = {"role": "user", "content": text}
        prompt = prompt_tokens(self.tokenizer, self.messages + [turn])
        self.messages.append(turn)
        pieces = []
        try:
            for piece in stream_tokens(self.model, self.tokenizer, prompt, self.sampling):
                pieces.append(piece)
                yield piece
        finally:
            self.messages.append({"role": "assistant", "content": "".join(pieces)})

