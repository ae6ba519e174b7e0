"""``mogsim cifar-optimal-gap``: trained CIFAR-10 UNets against the empirical optimum along training time.

``config`` (the grid and its checks, profiles), ``data`` (nested subsets and held-out images), ``eval`` (one cell at
one evaluation point: RP to the optimum, copies, per-sigma distances, loss against its floor), ``cells`` (each cell a
``mogsim train`` run folder trained from point to point), ``combine`` (results across cells: memorization time,
RP between widths and seeds, figures, claims), ``launch`` (shards through submitit) and ``command`` (the command).
"""
