"""Training recipes (kept apart from the model builders, torchtune-style)."""
