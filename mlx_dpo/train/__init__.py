"""Train: from tokenized pairs to a trained adapter in a run dir.

    batching.py        length-grouped, padded batches (chosen rows, then rejected rows) in a seeded order
    prompt_sharing.py  the layout that runs each prompt once for both answers (and its exactness rules)
    layout.py          the choice between the two layouts: how a batch is built, scored and sorted
    logprobs.py        completion log-probs; the LM head only at completion positions, in blocks
    reference.py       the reference log-probs, scored once with the starting model and cached on disk
    losses.py          the loss registry: every preference loss (TRL's names), its settings, metrics
    kto.py             the unpaired losses' KL point, formulas and class-mean metrics (kto, apo_zero_unpaired)
    evaluation.py      DPO metrics of a whole pairs file
    samples.py         greedy answers to a few held-out prompts at each evaluation (start vs now)
    health.py          health signals and warnings (likelihood displacement, KL, collapse, degenerate answers)
    session.py         everything a run needs, built once (model, adapter, pairs, layout, loss, reference)
    fit.py             does a run fit in memory: the estimate on the data's lengths, the budget, settings that fit
    trainer.py         the compiled step, accumulation, schedule, eval, checkpoints, resume
    checkpoint.py      atomic checkpoints, the metrics log, the run dir's lock
    control.py         stop signals that checkpoint first; out-of-memory detection
    distributed.py     data-parallel ranks under mlx.launch (sharding, collectives, watchdog)
    events.py          the Reporter callbacks of a run and their JSON-lines form (`train --events`)
"""
