"""Analyses of stored results (sweep tables): no training, no closed forms, only the numbers a run wrote.

* :mod:`.transitions` -- N*(r) under several measures, seed-bootstrap intervals, and the fit N* ~ r^b;
* :mod:`.training_time` -- along training time: the step where memorization sets in and where the net becomes
  accurate, per (r, N), and their fits against N;
* :mod:`.collapse` -- paper 2's collapse: GL and the on-subspace fraction against N_k / d per d, and the N_k / d
  where GL reaches 0.9.
"""

from .collapse import GL_LEVEL, collapse, collapse_over_time, collapse_table

from .training_time import EVENTS, Event, analyse_event, analyse_time, cell_events
from .transitions import (COPY_EXCESS, COPY_FRACTION, DEFAULT_MEASURES, OLD_INDEX, POSITION_TRAIN, RP_TRUE,
                          VERDICT_MEASURES, Measure, analyse, analyse_measure, column, crossing, fit_power_law,
                          label_share, position_at_levels, with_fixed_position)

__all__ = ["COPY_EXCESS", "COPY_FRACTION", "DEFAULT_MEASURES", "EVENTS", "GL_LEVEL", "OLD_INDEX", "POSITION_TRAIN",
           "RP_TRUE", "VERDICT_MEASURES", "Event", "Measure", "analyse", "analyse_event", "analyse_measure",
           "analyse_time", "cell_events", "collapse", "collapse_over_time", "collapse_table", "column", "crossing",
           "fit_power_law", "label_share", "position_at_levels", "with_fixed_position"]
