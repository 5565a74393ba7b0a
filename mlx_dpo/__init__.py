"""mlx-dpo: Direct Preference Optimization of LoRA adapters with MLX (headless engine; never imports the UI)."""

__version__ = "0.1.0"
