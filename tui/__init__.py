"""The mlx-dpo Textual app: the tabs Data, Model, Train, Runs, Chat and Export over the engine.

- `app.py`       the App: tabs, app-wide keys, the `?` screen and command-palette commands, first focus
                 per tab, the shared choices (model, data, run dir)
- `panes/`       one module per tab, each with its own BINDINGS (shown in the footer) and `focus_first()`
                 (the Train tab's parts in their own: train_form.py, iterate_form.py, run_monitor.py)
- `widgets/`     widgets the panes share (live metrics charts, a path input with completion, a toggle)
- `confirm.py`   dialogs: yes/no with the safe answer focused (quit, delete a run), a path prompt, editing
                 an A/B answer before it is saved
- `help_screen.py` the `?` screen: the keys of the current tab
- `engine.py`    the one thread that owns this process's MLX work (data statistics, chat and A/B chat, export)
- `training.py`  the trainer child process (`mlx-dpo train --events`) and its structured events
- `messages.py`  the messages the engine thread and the trainer send to the panes
- `launcher.py`  the `mlx-dpo` console script: the app, or the headless CLI

It uses the engine only through `mlx_dpo`'s public names, and reads the trainer's JSON events, never
its human log lines.
"""
