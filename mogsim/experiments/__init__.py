"""mogsim.experiments."""
