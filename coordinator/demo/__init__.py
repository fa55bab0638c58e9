"""`accord demo`: an embedded coordinator, three team agents, one cross-team workflow."""
