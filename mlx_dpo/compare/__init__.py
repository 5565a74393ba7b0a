"""Did it get better? `mlx-dpo compare`: an adapter's answers against the base's (or another run's), judged.

    run.py     answer every prompt with both sides (greedy, or K samples at a temperature), judge each pair,
               record the verdicts in RUN_DIR/compare-*.jsonl (MLX, loaded on first use)
    duels.py   one prompt's two answers shown in a balanced blind order, verdicts, the record files (no MLX)
    stats.py   wins / ties / losses, the win rate with its 95% interval, examples, and a Bradley–Terry
               ranking of several runs from all their verdicts (no MLX)

The judges are iterate's (iterate/judges.py): python scoring functions, a judge model asked in both
orders, or a person, who sees the two answers blind (sides shuffled, balanced over the prompts).
"""
