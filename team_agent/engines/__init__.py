"""Engine adapters (entry-point group ``accord.engines``)."""
