"""Feature-sequence datasets (the on-disk store the model trains on) and the synthetic corpus."""
