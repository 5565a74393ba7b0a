"""Iterative (online) DPO: the model writes its own answers, a judge ranks them, it trains, round after round.

    prompts ─▶ K answers per prompt from the current policy (seeded per round and prompt)
            ─▶ the judge scores them ─▶ best vs worst pairs (ties and small spreads skipped)
            ─▶ a normal training run from the previous round's adapter ─▶ held-out report ─▶ next round

Every round is a run dir `DIR/round_N` (resume, the Runs tab, chat and export work on it) holding what
made it: `answers.jsonl` (the samples), `judged.jsonl` (their scores), `pairs.jsonl` (what it trained on,
in the normal pairs format), `heldout.jsonl` and `report.json`. `DIR/rounds.jsonl` lists the reports.
Each stage appends or writes atomically, so an interrupted `iterate` continues where it stopped.

Modules: `prompts` (reading prompt files), `judges` (python:, model:, human), `sampling` (answers from the
policy), `report` (the per-round numbers), `rounds` (the loop, its files and resume).
"""
