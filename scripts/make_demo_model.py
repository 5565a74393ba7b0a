#!/usr/bin/env python
"""Build the bundled demo chat model (`sample_data/demo-model/`) and its preference pairs.

Reproducible (fixed seeds) and offline. Steps:

1. A corpus of single-turn ChatML dialogues over the tasks of `mlx_dpo.demo.tasks` (arithmetic,
   unit conversion, counting letters / list items, capitals, fruit colours, animal legs), each
   answer drawn from `demo_tasks.STYLE_MIX`: 40% correct & polite, 20% correct & curt, 25% wrong
   (polite or curt), 15% rambling. "Obviously ..." opens 35% of answers and each of the four polite
   openers ~12.5%, so the base model's greedy answers are curt: DPO has something to fix.
2. A byte-level BPE tokenizer trained on that corpus with `tokenizers` (the pipeline of
   `tiny_models`, so mlx-lm and transformers tokenize identically), ChatML special tokens and a
   ChatML chat template.
3. A small Llama (hidden 128, 4 layers, 4 heads, 2 KV heads, MLP 384, tied embeddings, float32)
   pretrained with MLX on plain next-token loss over whole dialogues (prompt + answer), AdamW,
   warm-up + cosine schedule; written in mlx-lm / Hugging Face format.
4. `sample_data/demo_pairs.jsonl` (300) and `sample_data/demo_valid.jsonl` (60): chosen = correct,
   polite, concise; rejected = curt, wrong or rambling; valid prompts come from task instances held
   out of the training pairs (`demo_tasks.split_of`). The pretraining corpus covers all instances
   (it is the "world knowledge" of the base model); the split only separates the DPO data.

Measured on the 2-core AMD EPYC dev machine (mlx-cpu 0.32.4, shared with other jobs, run with OpenBLAS
preloaded for speed: ``LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libopenblas.so.0``; the script does not
need it): corpus 40,000 dialogues / 1.73 M tokens, tokenizer 1,006 tokens, model 918,656 parameters
(3.7 MB float32), 2,047 AdamW steps of ~1,024 tokens (one epoch) in 784 s (13 min), final loss 0.320
(mean of the last 200 steps). Greedy answers on held-out-split prompts: 52% correct, all curt (mean
reward 0.458); sampled at T = 1: 34% correct, styles mixed (0.513). Small batches matter: the same
tokens in 4,096-token batches (418 steps) left the model ignoring the prompt. More numbers in
`sample_data/demo-model/README.md`, which this script writes.

Usage:
    python scripts/make_demo_model.py                 # model + pairs (minutes)
    python scripts/make_demo_model.py --pairs-only    # just the two pairs files (instant)
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import random
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tiny_models: the test suite's offline model builder

from mlx_dpo.demo import tasks as demo_tasks  # noqa: E402
from tiny_models import SPECIAL_TOKENS, _config, _dump_json, _random_weights, _tokenizer_config, \
    _train_tokenizer  # noqa: E402

SEED = 1234
SHAPE = dict(hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=384)
VOCAB = 1024


def chatml(prompt: str, answer: str) -> str:
    return (f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>\n")


def write_pairs(out_dir: pathlib.Path, n_train=300, n_valid=60, seed=SEED) -> None:
    for name, split, n, s in (("demo_pairs.jsonl", "train", n_train, seed),
                              ("demo_valid.jsonl", "valid", n_valid, seed + 1)):
        rows = demo_tasks.make_pairs(n, split, s)
        (out_dir / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                    encoding="utf-8")
        print(f"wrote {out_dir / name}: {len(rows)} pairs")
    train = {json.loads(l)["prompt"] for l in (out_dir / "demo_pairs.jsonl").read_text().splitlines()}
    valid = {json.loads(l)["prompt"] for l in (out_dir / "demo_valid.jsonl").read_text().splitlines()}
    assert not train & valid, "valid prompts must be held out"


def batches(seqs, batch_tokens, rng, pad_multiple=16):
    """Length-bucketed batches of ~batch_tokens tokens, shuffled; yields (inputs, mask) numpy arrays."""
    import numpy as np

    order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i]), rng.random()))
    groups, cur, cur_len = [], [], 0
    for i in order:
        L = -(-len(seqs[i]) // pad_multiple) * pad_multiple
        if cur and (len(cur) + 1) * max(L, cur_len) > batch_tokens:
            groups.append(cur)
            cur, cur_len = [], 0
        cur.append(i)
        cur_len = max(cur_len, L)
    if cur:
        groups.append(cur)
    rng.shuffle(groups)
    for g in groups:
        L = -(-max(len(seqs[i]) for i in g) // pad_multiple) * pad_multiple
        x = np.zeros((len(g), L), np.int32)
        m = np.zeros((len(g), L), np.float32)
        for r, i in enumerate(g):
            x[r, : len(seqs[i])] = seqs[i]
            m[r, : len(seqs[i])] = 1
        yield x, m


def pretrain(model, seqs, epochs, lr, batch_tokens, seed, log_every=100):
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    import numpy as np
    from functools import partial

    rng = random.Random(seed)
    steps_per_epoch = sum(1 for _ in batches(seqs, batch_tokens, random.Random(0)))
    total = steps_per_epoch * epochs
    warm = min(200, total // 10)
    sched = optim.join_schedules([optim.linear_schedule(1e-5, lr, warm),
                                  optim.cosine_decay(lr, total - warm, lr * 0.05)], [warm])
    opt = optim.AdamW(learning_rate=sched, weight_decay=0.01)

    def loss_fn(model, x, m):
        logits = model(x[:, :-1])
        ce = nn.losses.cross_entropy(logits, x[:, 1:]) * m[:, 1:]
        return ce.sum() / m[:, 1:].sum()

    state = [model.state, opt.state]
    vg = nn.value_and_grad(model, loss_fn)

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x, m):
        loss, grads = vg(model, x, m)
        grads, _ = optim.clip_grad_norm(grads, 1.0)
        opt.update(model, grads)
        return loss

    t0, s, losses, history = time.perf_counter(), 0, [], []
    for epoch in range(epochs):
        for x, m in batches(seqs, batch_tokens, rng):
            loss = step(mx.array(x), mx.array(m))
            mx.eval(loss, state)
            losses.append(loss.item())
            s += 1
            if s % log_every == 0 or s == total:
                avg = float(np.mean(losses[-log_every:]))
                history.append((s, avg))
                print(f"step {s}/{total} epoch {epoch + 1} loss {avg:.4f} "
                      f"({time.perf_counter() - t0:.0f}s)", flush=True)
    return float(np.mean(losses[-min(len(losses), 200):])), time.perf_counter() - t0, total, history


def behaviour_summary(path, n=120, seed=SEED):
    """Greedy and sampled answers of the saved model on valid-split prompts, scored by the reward."""
    import collections

    import mlx.core as mx

    from mlx_dpo.model.generate import Sampling, answer, load_for_generation
    from mlx_dpo.demo.reward import score

    model, tok, _ = load_for_generation(str(path), log=lambda m: None)
    rng = random.Random(seed)
    tasks = [t for t in demo_tasks.all_tasks(random.Random(0)) if demo_tasks.split_of(t) == "valid"]
    rng.shuffle(tasks)
    out = {}
    for mode, sampling in (("greedy", Sampling(temperature=0.0, max_tokens=96)),
                           ("sampled", Sampling(temperature=1.0, max_tokens=96))):
        scores, styles = [], collections.Counter()
        for i, t in enumerate(tasks[:n]):
            p = demo_tasks.make_prompt(t, i)
            mx.random.seed(seed + i)
            a = answer(model, tok, [{"role": "user", "content": p}], sampling)
            sc = score(p, a)
            scores.append(sc)
            styles["polite" if sc.polite else "rude" if not sc.civil else "rambling" if sc.concise < 1 else "other"] += 1
            if mode == "greedy" and i < 6:
                print(f"  {p!r} -> {a!r} (reward {sc.total:.2f})")
        out[mode] = {"mean_reward": sum(s.total for s in scores) / len(scores),
                     "correct": sum(s.correct for s in scores) / len(scores),
                     "styles": dict(styles)}
        print(f"{mode}: {out[mode]}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "sample_data" / "demo-model"))
    ap.add_argument("--pairs-only", action="store_true", help="only write the preference pairs files")
    ap.add_argument("--readme-only", action="store_true",
                    help="re-evaluate the saved model and rewrite README.md from build_stats.json")
    ap.add_argument("--dialogues", type=int, default=40000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-tokens", type=int, default=1024)
    args = ap.parse_args(argv)

    out = pathlib.Path(args.out)
    if args.readme_only:
        stats = json.loads((out / "build_stats.json").read_text())
        write_readme(out, {**stats, "summary": behaviour_summary(out)})
        return
    write_pairs(ROOT / "sample_data")
    if args.pairs_only:
        return
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten
    from mlx_lm.utils import _get_classes
    from safetensors.numpy import save_file

    random.seed(SEED)
    np.random.seed(SEED)
    mx.random.seed(SEED)
    out.mkdir(parents=True, exist_ok=True)

    dialogues = demo_tasks.corpus_dialogues(args.dialogues, SEED)
    texts = [chatml(p, a) for p, a in dialogues]
    t0 = time.perf_counter()
    tok = _train_tokenizer([p + "\n" + a for p, a in dialogues], VOCAB)
    tok.save(str(out / "tokenizer.json"))
    _dump_json(_tokenizer_config(True), out / "tokenizer_config.json")
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    bos, eos, pad = ids["<|endoftext|>"], ids["<|im_end|>"], ids["<|endoftext|>"]
    seqs = [e.ids for e in tok.encode_batch(texts)]
    n_tokens = sum(map(len, seqs))
    print(f"{len(seqs)} dialogues, {n_tokens:,} tokens (mean {n_tokens / len(seqs):.1f}), "
          f"vocab {tok.get_vocab_size()}, tokenizer {time.perf_counter() - t0:.1f}s")

    config = _config("llama", VOCAB, SHAPE["hidden_size"], SHAPE["num_layers"], SHAPE["num_heads"],
                     SHAPE["num_kv_heads"], SHAPE["intermediate_size"], True, bos, eos)
    config["max_position_embeddings"] = 512
    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    model.load_weights([(k, mx.array(v)) for k, v in _random_weights(model, SEED).items()], strict=True)
    n_params = sum(v.size for _, v in tree_flatten(model.parameters()))
    print(f"model: {n_params:,} parameters")

    final_loss, seconds, steps, history = pretrain(model, seqs, args.epochs, args.lr, args.batch_tokens, SEED)
    weights = {k: np.array(v, dtype=np.float32) for k, v in sorted(tree_flatten(model.parameters()))}
    for stale in out.glob("model*.safetensors*"):
        stale.unlink()
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "model.safetensors").chmod(0o644)  # safetensors writes 0600
    _dump_json(config, out / "config.json")
    _dump_json({"bos_token_id": bos, "eos_token_id": [eos, pad], "pad_token_id": pad, "do_sample": False,
                "transformers_version": config["transformers_version"]}, out / "generation_config.json")
    size_mb = (out / "model.safetensors").stat().st_size / 1e6
    print(f"trained {steps} steps in {seconds:.0f}s, final loss {final_loss:.4f}, model {size_mb:.1f} MB")

    stats = dict(dialogues=len(seqs), tokens=n_tokens, vocab=tok.get_vocab_size(), params=n_params,
                 size_mb=round(size_mb, 2), seconds=round(seconds, 1), steps=steps, epochs=args.epochs, lr=args.lr,
                 batch_tokens=args.batch_tokens, final_loss=round(final_loss, 4), history=history)
    _dump_json(stats, out / "build_stats.json")
    write_readme(out, {**stats, "summary": behaviour_summary(out)})


def write_readme(out, s):
    g, smp = s["summary"]["greedy"], s["summary"]["sampled"]
    curve = ", ".join(f"{st}: {l:.3f}" for st, l in s["history"][:: max(1, len(s["history"]) // 8)])
    text = f"""# demo-model

A tiny pretrained chat model bundled so that mlx-dpo works offline out of the box. Built by
`scripts/make_demo_model.py` (fixed seeds; rerun it to rebuild). It answers the questions of
`mlx_dpo/demo/tasks.py` — arithmetic (+, -, × on small numbers), unit conversions, counting letters
and list items, capitals of {len(demo_tasks.CAPITALS)} countries, fruit colours, animal legs — in
ChatML, and knows nothing else.

Its pretraining answers were deliberately mixed: 40% correct & polite, 20% correct & curt
("Obviously 15. Next question."), 25% wrong, 15% rambling. Greedy decoding therefore gives the curt
style, and sampling gives all of them: DPO on `sample_data/demo_pairs.jsonl` (polite, correct,
concise answers preferred) has something measurable to fix, scored by `mlx_dpo.demo.reward`.

| | |
|---|---|
| architecture | Llama, hidden {SHAPE['hidden_size']}, {SHAPE['num_layers']} layers, {SHAPE['num_heads']} heads ({SHAPE['num_kv_heads']} KV), MLP {SHAPE['intermediate_size']}, tied embeddings |
| parameters | {s['params']:,} (float32, {s['size_mb']:.1f} MB) |
| tokenizer | byte-level BPE, {s['vocab']} tokens, ChatML (`<|endoftext|>`, `<|im_start|>`, `<|im_end|>`) |
| corpus | {s['dialogues']:,} dialogues, {s['tokens']:,} tokens |
| training | {s['epochs']} epochs, {s['steps']} AdamW steps of ~{s['batch_tokens']} tokens, peak lr {s['lr']}, warm-up + cosine |
| training time | {s['seconds'] / 60:.1f} min on a 2-core AMD EPYC (mlx-cpu 0.32.4, OpenBLAS preloaded) |
| final loss | {s['final_loss']:.4f} (mean over the last 200 steps; all tokens incl. prompt) |

Loss curve (step: loss): {curve}.

Behaviour on {sum(g['styles'].values())} held-out-split prompts, scored by `mlx_dpo.demo.reward` (in [0, 1]):

| decoding | mean reward | correct | styles |
|---|---|---|---|
| greedy | {g['mean_reward']:.3f} | {g['correct']:.0%} | {g['styles']} |
| sampled, T = 1 | {smp['mean_reward']:.3f} | {smp['correct']:.0%} | {smp['styles']} |

Try it: `mlx_lm.generate --model sample_data/demo-model --prompt "What is 7 plus 8?"`.
"""
    (out / "README.md").write_text(text, encoding="utf-8")
    print(f"wrote {out / 'README.md'}")


if __name__ == "__main__":
    main()
