"""The bundled sample data of mlx-dpo (pairs files and the demo model), installed as package data.

Nothing to import: `mlx_dpo.demo` finds these files through this package's location.
"""
