"""The three demo teams' code: what each team runs behind its contract, on its own engine."""
