"""Experiment reports from run folders: ``python -m catdiff.report DIR [DIR ...]``.

Reads the run folders that ``catdiff.train`` and ``catdiff.evaluate`` write (config, final
metrics, CSV or W&B loss history, eval results), groups runs into arms (seeds are
replicates) and writes ``REPORT.md`` with figures, a metrics table, a seed-noise verdict per
metric, the compute used and the commands that reproduce it. See :mod:`catdiff.report.cli`.

No Lightning or Hydra here: the report reads files only (matplotlib for figures, torch only
to count model parameters).
"""

from catdiff.report.cli import main, make_report

__all__ = ["main", "make_report"]
