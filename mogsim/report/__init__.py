"""mogsim.report."""
