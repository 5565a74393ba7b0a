"""Full screens pushed over the tabs (one per module)."""
