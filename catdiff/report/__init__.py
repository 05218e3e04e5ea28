"""Experiment reports from run folders: ``python -m catdiff.report DIR [DIR ...]``.

Reads what ``catdiff.train`` and ``catdiff.evaluate`` write, groups runs into arms (seeds are
replicates) and writes ``REPORT.md``: figures, metrics, a seed-noise verdict per metric, the
compute used and the commands that reproduce it. See :mod:`catdiff.report.cli`.
"""

from catdiff.report.cli import main, make_report

__all__ = ["main", "make_report"]
