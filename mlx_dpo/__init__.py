"""mlx-dpo: Direct Preference Optimization of LoRA adapters with MLX — the headless engine.

The engine never imports the UI (`tui/`). Its stages, in the order data flows through them:

- `data/`    read pairs files and validate every row; render with the chat template, check the
             prompt/completion boundary, truncate; a preview for the app
- `model/`   load a base model (folder or hub id), quantize, add LoRA/DoRA, adapters on disk and
             switched on/off in place, the CPU matmul path, generation and chat, memory estimates
- `train/`   batches and their layouts, completion log-probs, the cached reference, the loss family,
             the session that builds a run, the trainer, checkpoints, data-parallel ranks, events
- `export/`  fused Hugging Face model, PEFT adapter or mlx-lm folder, each verified by reloading it
- `iterate/` iterative DPO: prompts, judges, sampling, rounds and their reports
- `compare/` did it get better: both sides answer, a judge decides (blind for a person), win rate with
             its interval, a Bradley–Terry ranking of runs
- `demo/`    the bundled demo model and data, its tasks' ground-truth reward, behaviour eval, frontier
- `cli/`     the `mlx-dpo` command: parser, one module per command family, exit codes

Beside them: `config` (TrainConfig, the one source of the flags), `errors`, `fileio` (atomic
writes, tolerant JSONL reads), `runs` (reading run dirs).

The names below are the public API the CLI and the app use. They are imported on first use, so
`import mlx_dpo` stays cheap and loads no MLX (the app's UI thread must not touch MLX).
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

# public name -> (module, attribute)
_API = {
    # configuration and errors
    "TrainConfig": ("config", "TrainConfig"),
    "LOSSES": ("config", "LOSSES"),
    "LOSS_KINDS": ("train.losses", "REGISTRY"),
    "LOSS_PARAMS": ("train.losses", "PARAMS"),
    "loss_params": ("train.losses", "loss_params"),
    "build_config": ("config", "build_config"),
    "load_run_config": ("config", "load_run_config"),
    "eval_flags_for_run": ("config", "eval_flags_for_run"),
    "RESUME_MAY_CHANGE": ("config", "RESUME_MAY_CHANGE"),
    "load_config_file": ("config", "load_yaml"),
    "parse_template_kwargs": ("config", "parse_template_kwargs"),
    "UsageError": ("errors", "UsageError"),
    "DataError": ("errors", "DataError"),
    "Problem": ("errors", "Problem"),
    "config_error": ("errors", "config_error"),
    "TrainingStopped": ("errors", "TrainingStopped"),
    # run dirs
    "RunInfo": ("runs", "RunInfo"),
    "read_run": ("runs", "read_run"),
    "list_runs": ("runs", "list_runs"),
    "read_iteration_settings": ("runs", "read_iteration_settings"),
    "ITERATE_FLAGS": ("runs", "ITERATE_FLAGS"),
    "MetricsFollower": ("runs", "MetricsFollower"),
    # data
    "DataKeys": ("data.pairs", "DataKeys"),
    "load_pairs": ("data.pairs", "load_pairs"),
    "PreferenceFile": ("data.preferences", "PreferenceFile"),
    "pair_row": ("data.preferences", "pair_row"),
    "unpaired_row": ("data.preferences", "unpaired_row"),
    "prepare": ("data.prepare", "prepare"),
    "inspect_data": ("data.preview", "inspect_data"),
    "DataSpec": ("data.sources", "DataSpec"),
    "cached_datasets": ("data.sources", "cached_datasets"),
    "DATA_SUFFIXES": ("data.sources", "DATA_SUFFIXES"),
    "token_table": ("data.preview", "token_table"),
    "set_render_options": ("data.template", "set_render_options"),
    # models, adapters, generation
    "resolve_model_path": ("model.load", "resolve_model_path"),
    "load_base": ("model.load", "load_base"),
    "load_tokenizer_only": ("model.load", "load_tokenizer_only"),
    "AdapterSwitch": ("model.adapters", "AdapterSwitch"),
    "Sampling": ("model.generate", "Sampling"),
    "load_for_generation": ("model.generate", "load_for_generation"),
    "stream_answer": ("model.generate", "stream_answer"),
    "answer": ("model.generate", "answer"),
    "ChatSession": ("model.generate", "ChatSession"),
    "ABChat": ("model.ab", "ABChat"),
    "MemoryEstimate": ("model.memory", "MemoryEstimate"),
    "estimate_memory": ("model.memory", "estimate"),
    "human_bytes": ("model.memory", "human"),
    "estimate_run": ("train.fit", "estimate_run"),   # does a run fit: the estimate on the data, settings that fit
    # training
    "Loss": ("train.losses", "Loss"),
    "Session": ("train.session", "Session"),
    "Trainer": ("train.trainer", "Trainer"),
    "Reporter": ("train.events", "Reporter"),
    "JsonEvents": ("train.events", "JsonEvents"),
    "run_eval": ("train.session", "run_eval"),
    # what the model says while it trains, and the run's health (samples and warning events)
    "read_samples": ("runs", "read_samples"),
    "HEALTH_KINDS": ("train.health", "KINDS"),
    "HEALTH_BOUNDS": ("train.health", "BOUNDS"),
    # did it get better: compare (the engine thread answers; recording and statistics load no MLX)
    "CompareConfig": ("compare.run", "CompareConfig"),
    "run_compare": ("compare.run", "run_compare"),
    "prepare_comparison": ("compare.run", "prepare_comparison"),
    "Comparison": ("compare.run", "Comparison"),
    "Duel": ("compare.duels", "Duel"),
    "COMPARE_BASE": ("compare.duels", "BASE"),  # how the records name the base side
    "compare_files": ("compare.duels", "compare_files"),
    "read_verdicts": ("compare.duels", "read_verdicts"),
    "read_compare": ("compare.stats", "read_compare"),
    "summarize_compare": ("compare.stats", "summarize"),
    "rank_runs": ("compare.stats", "rank_runs"),
    "rank_run_dirs": ("compare.stats", "rank_run_dirs"),
    # export
    "ExportConfig": ("export.formats", "ExportConfig"),
    "ExportResult": ("export.formats", "ExportResult"),
    "run_export": ("export.formats", "run_export"),
    # iterative DPO
    "IterateConfig": ("iterate.rounds", "IterateConfig"),
    "read_rounds": ("runs", "read_rounds"),
    "is_iteration": ("runs", "is_iteration"),
    "run_iterate": ("iterate.rounds", "run_iterate"),
    "make_judge": ("iterate.judges", "make_judge"),
    "load_prompts": ("iterate.prompts", "load_prompts"),
    "DEMO_JUDGE": ("iterate.judges", "DEMO_JUDGE"),
    # the demo
    "DEMO_MODEL": ("demo", "DEMO_MODEL"),
    "DEMO_PAIRS": ("demo", "DEMO_PAIRS"),
    "DEMO_VALID": ("demo", "DEMO_VALID"),
    "DEMO_SETTINGS": ("demo", "DEMO_SETTINGS"),
    "default_model": ("demo", "default_model"),
    "is_demo_model": ("demo", "is_demo_model"),
    # the command line
    "main": ("cli", "main"),
}

__all__ = sorted(_API)


def __getattr__(name: str):
    try:
        module, attr = _API[name]
    except KeyError:
        raise AttributeError(f"module 'mlx_dpo' has no attribute {name!r}") from None
    value = getattr(import_module(f".{module}", __name__), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
