"""Accord contracts: the language coordinator and agents share."""
