"""mogsim.metrics."""
