"""The Textual app for mlx-dpo (built in a later issue; talks to mlx_dpo only through its public API)."""
