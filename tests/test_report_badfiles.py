"""The report reads damaged run files without a traceback: bytes that are not UTF-8 in a
metrics.csv keep the numbers around them; a config.yaml that is not text is one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from catdiff.report.runs import read_csv_history
from tests.test_report import TAG, _copy_sweep, _report


def test_a_metrics_csv_with_invalid_utf8_still_reports(tmp_path: Path, capsys) -> None:
    sweep = _copy_sweep(tmp_path)
    damaged = next(sweep.glob("0_*")) / "csv" / "metrics.csv"
    lines = damaged.read_bytes().splitlines(keepends=True)
    damaged.write_bytes(lines[0] + b"\xff\xfe\xc3(\x00 garbage\n" + b"".join(lines[1:]))
    history = read_csv_history(damaged)
    assert history["train/loss"]  # the rows after the bad bytes count
    _report([sweep, f"out={tmp_path / 'out'}", f"eval={TAG}"], capsys)
    assert (tmp_path / "out" / "REPORT.md").is_file()


def test_a_config_that_is_not_text_is_one_line(tmp_path: Path) -> None:
    sweep = _copy_sweep(tmp_path)
    (next(sweep.glob("0_*")) / "config.yaml").write_bytes(b"\xff\xfe\x00binary")
    from catdiff.report import main

    with pytest.raises(SystemExit) as exited:
        main([str(sweep), f"out={tmp_path / 'out'}", f"eval={TAG}"])
    assert exited.value.code == 2
