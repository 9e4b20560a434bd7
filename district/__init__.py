"""District service: verify, store, acknowledge and tabulate results."""
