"""Analyses of stored results (sweep tables): no training, no closed forms, only the numbers a run wrote.

* :mod:`.transitions` -- N*(r) under several measures, seed-bootstrap intervals, and the fit N* ~ r^b.
"""

from .transitions import (COPY_EXCESS, COPY_FRACTION, DEFAULT_MEASURES, OLD_INDEX, POSITION_TRAIN, RP_TRUE, Measure,
                          analyse, analyse_measure, column, crossing, fit_power_law, label_share, position_at_levels,
                          with_fixed_position)

__all__ = ["COPY_EXCESS", "COPY_FRACTION", "DEFAULT_MEASURES", "OLD_INDEX", "POSITION_TRAIN", "RP_TRUE", "Measure",
           "analyse", "analyse_measure", "column", "crossing", "fit_power_law", "label_share", "position_at_levels",
           "with_fixed_position"]
