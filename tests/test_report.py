"""``python -m catdiff.report`` on the committed fixture runs (tests/fixtures/runs/: real
debug=fast training, made-up eval results, see tests/fixtures/make_fixture_eval.py): the
report's table, verdicts known by construction, figures, commands; FIDs of different
extractors never share a table; pooled folders; missing evals; the W&B fallback; mistakes
give exit code 2 and one line."""

from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from catdiff.report import main
from catdiff.report.markdown import eval_options
from catdiff.report.runs import Run, group_arms
from catdiff.report.stats import compare, t_two_sided_p
from tests.conftest import ROOT

SWEEP = ROOT / "tests" / "fixtures" / "runs" / "loss_sweep" / "multirun_2030-01-01_00-00-00"
TAG = "ddim50_n1000"


def _report(argv: list[str], capsys) -> tuple[str, str]:
    main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return out, err


def _tables(text: str) -> list[tuple[list[str], dict[str, list[str]]]]:
    """The arm tables of the Metrics section: (header, {arm: cells}) each."""
    section = text.split("## Metrics", 1)[1].split("<details>", 1)[0]
    tables, header = [], None
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split(" | ")] if line.startswith("|") else None
        if cells and cells[:2] == ["arm", "n"]:
            header = cells
            tables.append((header, {}))
        elif cells and header and cells[0].startswith("`"):
            tables[-1][1][cells[0].strip("`")] = cells
        elif not line.startswith("|"):
            header = None
    return tables


def _header(text: str) -> list[str]:
    return _tables(text)[0][0]


def _row(text: str, arm: str) -> list[str]:
    return _tables(text)[0][1][arm]


def _cells(text: str, column_prefix: str) -> list[dict[str, str]]:
    """{arm: cell} of each table that has a column starting with column_prefix."""
    out = []
    for header, rows in _tables(text):
        for k, h in enumerate(header):
            if h.startswith(column_prefix):
                out.append({arm: cells[k] for arm, cells in rows.items()} | {"": h})
    return out


def _verdict(text: str, metric_prefix: str) -> str:
    section = text.split("## Verdict", 1)[1].split("## Figures", 1)[0]
    block = section.split(f"**{metric_prefix}", 1)[1].split("\n\n**", 1)[0]
    return block


def _copy_sweep(tmp_path: Path, keep=lambda name: True, dest: Path | None = None) -> Path:
    dest = dest or tmp_path / "sweep"
    dest.mkdir(parents=True)
    for run in SWEEP.iterdir():
        if run.is_dir() and keep(run.name):
            shutil.copytree(run, dest / run.name)
    return dest


@pytest.fixture(scope="module")
def fixture_report(tmp_path_factory) -> tuple[Path, str, str]:
    out = tmp_path_factory.mktemp("report")
    (out / "NOTES.md").write_text("Hand-written interpretation survives.\n")
    main([str(SWEEP), f"out={out}"])
    text = (out / "REPORT.md").read_text()
    return out, text, ""


def test_table_has_mean_std_and_n_per_arm(fixture_report) -> None:
    _, text, _ = fixture_report
    assert text.startswith("# loss_sweep: `loss=l1` vs `loss=l2`")
    assert "**Fixture: the evaluation numbers are not results" in text
    header = _header(text)
    assert header[:4] == ["arm", "n", "final train loss", "final val loss (EMA)"]
    for arm in ("loss=l1", "loss=l2"):
        cells = _row(text, arm)
        assert cells[1] == "3"  # n = seeds
        assert all("±" in c for c in cells[2:-1]), cells  # every metric: mean ± std
    # the fixture's FID gray: l1 60.3, 59.1, 61.0 -> 60.13 ± 0.96
    assert _cells(text, "FID gray")[0]["loss=l1"] == "60.13 ± 0.96"
    for _, rows in _tables(text)[1:]:  # FID/KID tables: every cell mean ± std
        assert all("±" in c for cells in rows.values() for c in cells[2:]), rows
    nll_se = header.index("NLL bits/dim: mean per-run SE")
    assert _row(text, "loss=l1")[nll_se] == "0.040"


def test_verdicts_known_by_construction(fixture_report) -> None:
    _, text, _ = fixture_report
    assert "Welch" in text and "|diff| / s" in text  # the rule is stated
    fid_gray = _verdict(text, "FID gray")
    assert "larger than the seed-to-seed spread at 3 seeds" in fid_gray
    assert "lower is better, so `loss=l2` is better" in fid_gray and "p < 0.0001" in fid_gray
    assert "larger than the seed-to-seed spread" in _verdict(text, "KID gray")
    for metric in ("FID edges", "KID edges", "NLL bits/dim"):
        assert "not distinguishable from seed noise at 3 seeds" in _verdict(text, metric), metric
    # l1 vs l2 losses differ, but measure different things: said so
    assert "differ in diffusion.loss" in _verdict(text, "final val loss")


def test_fids_of_each_extractor_have_their_own_table(fixture_report) -> None:
    _, text, _ = fixture_report
    extractor_tables = [h for h, _ in _tables(text) if any(c.startswith("FID") for c in h)]
    assert len(extractor_tables) == 2 and extractor_tables[0][2].startswith(
        "FID gray [catdiff-simclr-v1 "
    )
    shas = []
    for header in extractor_tables:  # one extractor per table: FID and KID of one space
        ids = {c.split("[", 1)[1] for c in header[2:] if c.startswith(("FID", "KID"))}
        assert len(ids) == 1, header
        shas += ids
    assert shas[0] != shas[1]
    assert not any(c.startswith(("FID", "KID")) for c in _header(text))  # not with the losses


def test_figures_are_valid_pngs(fixture_report) -> None:
    out, text, _ = fixture_report
    names = ["loss_curves.png", "val_loss_by_t.png", "samples.png", "samples_zoom.png"]
    for name in names:
        path = out / "figures" / name
        assert f"](figures/{name})" in text
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.format == "PNG" and 100 < im.width < 1600 and 100 < im.height < 1200
        assert path.stat().st_size < 200_000


def test_compute_commands_and_discussion(fixture_report) -> None:
    _, text, _ = fixture_report
    compute = text.split("## Compute", 1)[1].split("## Reproduce", 1)[0]
    assert "44,969" in compute  # unet_tiny's parameters
    assert "320" in compute  # 20 steps x batch 16 x 1 process
    assert "fixture (made-up eval results" in compute  # machine from the eval results
    reproduce = text.split("## Reproduce", 1)[1]
    assert (
        "python -m catdiff.train experiment=loss_sweep debug=fast data=synthetic logger=csv "
        "seed=0,1,2 diffusion.loss=l1,l2" in reproduce
    )
    assert (
        "python -m catdiff.evaluate" in reproduce
        and "n=1000 sampler=ddim steps=50 seed=0" in reproduce
    )
    assert f"python -m catdiff.report {SWEEP.relative_to(ROOT)}" in reproduce or (
        f"python -m catdiff.report {SWEEP}" in reproduce
    )
    assert "hydra.sweep.dir" not in reproduce
    assert "## Discussion\n\nHand-written interpretation survives." in text


def test_bad_folder_exits_2_with_one_line(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "catdiff.report", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and str(tmp_path) in proc.stderr
    assert "not a run folder" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["/no/such/folder"], "/no/such/folder: no such folder"),
        ([str(SWEEP), "bogus=1"], "unknown option 'bogus'"),
        ([str(SWEEP), "name="], "name= needs a value"),
        ([str(SWEEP), "eval=ddpm1000_n5"], "eval=ddpm1000_n5: no run has"),
    ],
)
def test_mistakes_are_one_line_errors(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_another_extractor_gets_its_own_table(tmp_path, capsys) -> None:
    sweep = _copy_sweep(tmp_path)
    path = sweep / "5_data=synthetic,diffusion.loss=l2,seed=2" / "eval" / TAG / "metrics.json"
    ev = json.loads(path.read_text())
    ev["extractor"]["gray"] = {"name": "catdiff-simclr-v0", "sha256": "0123456789abcdef"}
    ev["fid"]["gray"] = 999.0
    path.write_text(json.dumps(ev))
    _report([sweep, f"out={tmp_path / 'out'}"], capsys)
    text = (tmp_path / "out" / "REPORT.md").read_text()
    gray = _cells(text, "FID gray")
    assert len(gray) == 2 and any("catdiff-simclr-v0 01234567" in t[""] for t in gray)
    old = next(t for t in gray if "v1" in t[""])
    new = next(t for t in gray if "v0" in t[""])
    assert old["loss=l2"] == "44.65 ± 0.78 (n=2)"  # 45.2, 44.1: 999 is elsewhere
    assert new["loss=l2"] == "999.0 (n=1)" and new["loss=l1"] == "-"
    assert "are not comparable" in text


def test_missing_eval_warns_and_shows_dash(tmp_path, capsys) -> None:
    sweep = _copy_sweep(tmp_path)
    for run in sweep.glob("*loss=l2*"):
        shutil.rmtree(run / "eval")
    _, err = _report([sweep, f"out={tmp_path / 'out'}", f"eval={TAG}"], capsys)
    assert err.count(f"no eval/{TAG}/metrics.json") == 3
    text = (tmp_path / "out" / "REPORT.md").read_text()
    assert _cells(text, "FID gray")[0]["loss=l2"] == "-"
    assert "cannot judge: no values in one arm" in _verdict(text, "FID gray")
    assert "## Warnings" in text


def test_pooled_folders_with_different_names(tmp_path, capsys) -> None:
    """A baseline's seeds as the control arm of another sweep: two folders, two names."""
    control = _copy_sweep(tmp_path, lambda n: "loss=l1" in n, tmp_path / "baseline" / "multirun_a")
    for config in control.glob("*/config.yaml"):
        config.write_text(config.read_text().replace("name: loss_sweep", "name: baseline"))
    other = _copy_sweep(tmp_path, lambda n: "loss=l2" in n, tmp_path / "loss_sweep" / "multirun_b")

    with pytest.raises(SystemExit):
        main([str(control), str(other)])
    assert "different names (baseline, loss_sweep): pass out=PATH" in capsys.readouterr().err

    _report([control, other, f"out={tmp_path / 'out'}"], capsys)
    text = (tmp_path / "out" / "REPORT.md").read_text()
    assert text.startswith("# out: `loss=l1` vs `loss=l2`")
    assert f"`{control}` (sweep folder, 3 of 3 runs used)" in text
    assert f"`{other}` (sweep folder, 3 of 3 runs used)" in text
    reproduce = text.split("## Reproduce", 1)[1]
    # no multirun.yaml in these copies: the members' overrides, merged
    assert "seed=0,1,2 diffusion.loss=l1 experiment=loss_sweep" in reproduce
    assert "seed=0,1,2 diffusion.loss=l2 experiment=loss_sweep" in reproduce


def _write_wandb(path: Path, rows: list[dict]) -> None:
    """A minimal offline W&B run file: header, then one FULL chunk per history record."""
    from wandb.proto import wandb_internal_pb2 as pb

    chunks = [b":W&B" + struct.pack("<HB", 0xBEE1, 0)]
    for row in rows:
        record = pb.Record()
        for key, value in row.items():
            item = record.history.item.add()
            item.key, item.value_json = key, json.dumps(value)
        data = record.SerializeToString()
        chunks.append(struct.pack("<IHB", zlib.crc32(data), len(data), 1) + data)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"".join(chunks))


def test_wandb_history_when_there_is_no_csv(tmp_path, capsys) -> None:
    sweep = _copy_sweep(tmp_path, lambda n: "seed=0" in n or "seed=1" in n)
    for run in sweep.iterdir():
        shutil.rmtree(run / "csv")
    run = next(sweep.glob("0_*"))
    rows = [
        {"trainer/global_step": 4, "train/loss": 0.8, "_step": 0},
        {"trainer/global_step": 9, "val/loss": 0.79, "epoch": 0},
    ]
    _write_wandb(run / "wandb" / "offline-run-x" / "run-x.wandb", rows)
    with pytest.raises(SystemExit):  # the other runs have neither
        main([str(sweep), f"out={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train with logger=[wandb,csv]" in err

    from catdiff.report.runs import read_history

    assert read_history(run) == (
        {"train/loss": [(4, 0.8)], "val/loss": [(9, 0.79)]},
        "wandb",
    )
    _report([run, f"out={tmp_path / 'out'}"], capsys)
    assert "| wandb |" in (tmp_path / "out" / "REPORT.md").read_text()


def _run(config: dict, overrides: list[str], seed: int) -> Run:
    return Run(
        Path(f"r{seed}"), Path("."), {"name": "x", "seed": seed, **config}, overrides, [], {}
    )


def test_arms_named_by_the_swept_key_not_its_consequences() -> None:
    runs = []
    for edges, channels in (("none", 1), ("sobel", 1), ("sobel+gray", 2)):
        for seed in (0, 1, 2):
            config = {
                "data": {"edges": edges, "seed": seed},
                "model": {"in_channels": channels},
                "paths": {"run_dir": f"/tmp/{edges}{seed}"},
            }
            runs.append(_run(config, [f"seed={seed}", f"data.edges={edges}"], seed))
    arms, differing = group_arms(runs)
    assert [a.label for a in arms] == ["edges=none", "edges=sobel", "edges=sobel+gray"]
    assert [a.seeds for a in arms] == [[0, 1, 2]] * 3
    assert set(differing) == {"data.edges", "model.in_channels"}


def test_arms_named_by_a_config_group_choice() -> None:
    runs = [
        _run({"model": {"base_channels": width, "dropout": 0.0}}, [f"model={name}"], seed)
        for name, width in (("unet_tiny", 8), ("unet_small", 16))
        for seed in (0, 1)
    ]
    arms, _ = group_arms(runs)
    assert [a.label for a in arms] == ["model=unet_tiny", "model=unet_small"]


def test_p_values_match_scipy_and_verdict_wording() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    for t, df in ((0.5, 4.0), (2.3, 3.7), (8.0, 2.1), (0.01, 30.0)):
        expected = 2 * scipy_stats.t.sf(abs(t), df)
        assert math.isclose(t_two_sided_p(t, df), expected, rel_tol=1e-8, abs_tol=1e-14)
    same = compare([1.0, 1.1, 0.9], [1.05, 0.95, 1.02])
    assert same.distinguishable is False
    assert same.verdict == "not distinguishable from seed noise at 3 seeds"
    far = compare([1.0, 1.1, 0.9], [3.0, 3.1, 2.9])
    assert far.distinguishable is True and far.p < 0.001 and math.isclose(far.effect, 20.0)
    assert compare([1.0], [2.0]).distinguishable is None


def test_eval_command_names_the_options_that_differ_from_the_defaults() -> None:
    ev = json.loads((next(SWEEP.glob("0_*")) / "eval" / TAG / "metrics.json").read_text())
    assert eval_options(ev) == "n=1000 sampler=ddim steps=50 seed=0"  # the rest: defaults
    ev["options"]["eta"] = 0.5
    ev["options"]["nll"]["timesteps"] = 64
    ev["options"]["batch_size"] = 7  # speed only: not part of the command
    assert eval_options(ev) == "n=1000 sampler=ddim steps=50 seed=0 eta=0.5 nll.timesteps=64"
    del ev["options"]  # an older result: the top-level entries
    assert eval_options(ev) == "n=1000 sampler=ddim steps=50 seed=0"


def test_cli_default_out_and_no_lightning(tmp_path) -> None:
    """``experiments/<name>`` under the working folder; the report never imports Lightning (it
    reads files; its options go through Hydra's override parser, as every entry point's)."""
    code = (
        "import sys; from catdiff.report import main; main(sys.argv[1:]); "
        "heavy = {m.split('.')[0] for m in sys.modules} & {'lightning', 'pytorch_lightning'}; "
        "sys.exit(f'imported {heavy}' if heavy else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(SWEEP)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "experiments" / "loss_sweep" / "REPORT.md").is_file()
    assert len(list((tmp_path / "experiments" / "loss_sweep" / "figures").glob("*.png"))) == 4


def test_a_new_metric_reaches_the_tables_without_report_code(tmp_path, capsys, monkeypatch):
    """Precision/recall (a metric the report's code never names) scored by catdiff.metrics
    into a fixture-like run set: its columns join the FID/KID tables of their extractor,
    with mean ± std over seeds, its direction in the verdicts and its own format per run."""
    import torch
    import yaml

    from catdiff.data.synthetic import synthetic_cats
    from catdiff.metrics import score as score_module
    from catdiff.metrics.precision_recall import PrecisionRecall
    from catdiff.report import stats
    from tests.test_metrics_score import Projection

    sweep = _copy_sweep(tmp_path)
    train = synthetic_cats(200, 28, seed=0)
    noise = torch.randint(0, 256, (100, 1, 28, 28), generator=torch.Generator().manual_seed(9))
    written: dict[str, list[float]] = {"loss=l1": [], "loss=l2": []}
    for run in sorted(sweep.iterdir(), key=lambda p: p.name):
        path = run / "eval" / TAG / "metrics.json"
        ev = json.loads(path.read_text())
        config = yaml.safe_load((run / "config.yaml").read_text())
        loss, seed = config["diffusion"]["loss"], config["seed"]
        fake = synthetic_cats(100, 28, seed=100 + seed)
        bad = (50 if loss == "l1" else 0) + 5 * seed  # l1 draws far more off-manifold images
        fake[:bad] = noise[:bad].to(torch.uint8)
        # the fixture's extractors (name, sha256), as if they had computed these features
        extractors = []
        for space in ("gray", "edges"):
            extractor = Projection(seed=len(extractors), name=ev["extractor"][space]["name"])
            extractor.sha256 = ev["extractor"][space]["sha256"]
            extractors.append(extractor)
        made = iter(extractors)
        monkeypatch.setattr(score_module, "extractor_for", lambda *args, made=made: next(made))
        out = score_module.score(fake, {"train": train}, {"edges": "none"}, [PrecisionRecall()])
        ev["scores"] = out["scores"]
        path.write_text(json.dumps(ev))
        written[f"loss={loss}"].append(out["scores"]["precision"]["value"]["gray"])

    _report([sweep, f"out={tmp_path / 'out'}"], capsys)
    text = (tmp_path / "out" / "REPORT.md").read_text()
    (precision,) = _cells(text, "precision gray [catdiff-simclr-v1 ")
    for arm, values in written.items():
        assert precision[arm] == stats.fmt_pm(values)
    # in the table of the gray extractor, next to FID and KID, and only there
    gray_table = next(h for h, _ in _tables(text) if "FID gray" in h[2])
    assert [c.split(" [")[0] for c in gray_table[2:]] == [
        "FID gray",
        "KID gray",
        "precision gray",
        "recall gray",
    ]
    assert "**FID, KID, precision and recall, gray space, extractor catdiff-simclr-v1 " in text
    assert "improved precision and recall (Kynkäänniemi et al. 2019)" in text  # its legend
    assert len(_cells(text, "recall edges [catdiff-simclr-v1 ")) == 1
    verdict = _verdict(text, "precision gray")
    assert "larger than the seed-to-seed spread" in verdict
    assert "higher is better, so `loss=l2` is better" in verdict
    per_run = text.split("<summary>Per-run values</summary>", 1)[1]
    assert f"| {written['loss=l1'][0]:.3f} |" in per_run  # its own format, ".3f"
    # and the report's code never names it
    for source in (ROOT / "catdiff" / "report").glob("*.py"):
        code = source.read_text().lower()
        assert "precision_recall" not in code and "recall" not in code, source


def test_detail_and_run_level_scores_go_in_the_main_table(tmp_path, capsys) -> None:
    """The older ``detail`` key (neither direction better) and a generic score of the whole
    run with a per-run spread: main-table columns, the spread's own column, no 'better'."""
    sweep = _copy_sweep(tmp_path)
    for k, path in enumerate(sorted(sweep.glob(f"*/eval/{TAG}/metrics.json"))):
        ev = json.loads(path.read_text())
        smoother = 0.3 if "loss=l2" in str(path) else 0.0
        ev["detail"] = {"gray": 0.9 + 0.01 * k - smoother, "edges": 0.9}
        ev["scores"] = {
            "bits_back": {
                "label": "bits back",
                "lower_is_better": True,
                "format": ".2f",
                "value": 2.0 + k,
                "spread": 0.5,
                "spread_name": "std",
            }
        }
        path.write_text(json.dumps(ev))
    _report([sweep, f"out={tmp_path / 'out'}"], capsys)
    text = (tmp_path / "out" / "REPORT.md").read_text()
    header = _header(text)
    for column in ("detail ratio gray", "detail ratio edges", "bits back"):
        assert column in header, header
    assert "bits back: mean per-run std" in header
    assert _row(text, "loss=l1")[header.index("bits back: mean per-run std")] == "0.50"
    assert _row(text, "loss=l1")[header.index("detail ratio edges")] == "0.9000 ± 0.0000"
    detail = _verdict(text, "detail ratio gray")  # l2 far smoother: not 'better' or 'worse'
    assert "larger than the seed-to-seed spread" in detail and "is better" not in detail
    assert "1 is as finely detailed as the data" in text  # its legend


def test_eval_command_of_a_result_with_the_sampler_group_in_its_options() -> None:
    """Results of the sampler group (options.sampler a mapping): its non-default keys are
    written dotted, its _target_ and steps never (steps is already there)."""
    ev = json.loads((next(SWEEP.glob("0_*")) / "eval" / TAG / "metrics.json").read_text())
    options = {k: v for k, v in ev["options"].items() if k not in ("steps", "eta", "spacing")}
    for flat in ("sde", "sigma", "clip_x0", "rederive_eps", "defaults"):
        options.pop(flat, None)
    sampler = {"_target_": "catdiff.diffusion.DDIMSampler", "steps": 50, "eta": 0.0}
    ev["options"] = {**options, "sampler": {**sampler, "clip_x0": True, "spacing": "trailing"}}
    assert eval_options(ev) == "n=1000 sampler=ddim steps=50 seed=0"
    ev["options"]["sampler"]["eta"] = 0.5
    assert eval_options(ev) == "n=1000 sampler=ddim steps=50 seed=0 sampler.eta=0.5"
    ev["sampler"], ev["steps"] = "ddpm", 1000  # all T steps: no steps= to write
    ev["options"]["sampler"] = {"_target_": "catdiff.diffusion.DDPMSampler", "sigma": "beta"}
    assert eval_options(ev) == "n=1000 sampler=ddpm seed=0 sampler.sigma=beta"
