"""catdiff vs diffusers (experiments.vs_diffusers): the peer recipe, snapshots, scoring, the copying
check and the report, end to end at toy size."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from catdiff.checkpoints import load_checkpoint, load_model
from catdiff.errors import UserError
from catdiff.metrics.copying import copying, nearest_distances
from catdiff.metrics.detail import laplacian_energy
from experiments.vs_diffusers import peer
from experiments.vs_diffusers.cli import parse
from experiments.vs_diffusers.data import training_images
from experiments.vs_diffusers.report import (
    at_equal_images,
    curves,
    detail_vs_kid,
    headline,
    markdown,
    write_report,
)
from experiments.vs_diffusers.score import (
    OURS,
    PEER,
    PEER_OUR_SAMPLER,
    Scorer,
    is_peer,
    is_seed_run,
    read_scores,
    recipe_sampler,
    samples_path,
    score_runs,
    snapshots_of,
    training_seed_recipe,
    training_seed_runs,
)
from tests.test_cli import FAST, run


def _random_faces(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)


def test_copying_flags_copies_and_mirrored_copies_but_not_new_faces() -> None:
    train, held_out, fresh = _random_faces(300, 0), _random_faces(200, 1), _random_faces(200, 2)
    assert copying(train[:100], train, held_out)["copies_more_than_held_out"]
    mirrored = copying(train[:100].flip(-1), train, held_out)
    assert mirrored["copies_more_than_held_out"] and mirrored["rate_samples"] == 1.0
    new = copying(fresh, train, held_out)
    assert not new["copies_more_than_held_out"]
    assert new["rate_held_out"] == pytest.approx(0.05, abs=0.01)


def test_nearest_distances_match_brute_force() -> None:
    refs, queries = _random_faces(20, 3), _random_faces(5, 4)
    dist, idx = nearest_distances(queries, refs, batch_size=2, mirror=False)
    brute = torch.cdist(queries.flatten(1).double() / 255, refs.flatten(1).double() / 255)
    assert torch.allclose(dist.double(), brute.min(1).values, atol=1e-5)
    assert torch.equal(idx, brute.argmin(1))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A 4-step peer run (stopped after 2 steps and resumed) and a debug catdiff run."""
    root = tmp_path_factory.mktemp("vs_peer")
    images = training_images(data="synthetic")["train"]
    opts = {"snapshot_every": 2, "resume_every": 2, "log_every": 1, "progress": False}
    peer.train(images, root / "peer", steps=2, **opts)
    peer.train(images, root / "peer", steps=4, **opts)
    ours = root / "ours"
    run(["catdiff.train", *FAST, f"hydra.run.dir={ours}", "callbacks.snapshots.every_n_steps=10"])
    return {PEER: root / "peer", OURS: ours}


def test_peer_resumes_and_snapshots_carry_images_seen_and_wall_time(runs) -> None:
    snaps = snapshots_of(runs[PEER])
    assert [s["step"] for s in snaps] == [2, 4]
    assert [s["images_seen"] for s in snaps] == [128, 256]
    assert snaps[0]["wall_s"] < snaps[1]["wall_s"]
    with (runs[PEER] / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]  # the resumed run went on at step 3
    assert all(float(r["loss"]) > 0 for r in rows)
    images = peer.sample(peer.load_snapshot(snaps[-1]["path"]), n=3, steps=2)
    assert images.dtype == torch.uint8 and images.shape == (3, 1, 28, 28)


def test_catdiff_snapshots_are_checkpoints_of_the_ema_weights(runs) -> None:
    snaps = snapshots_of(runs[OURS])
    assert [s["step"] for s in snaps] == [10, 20]
    assert snaps[-1]["images_seen"] == 20 * 16
    model, _, shape = load_model(load_checkpoint(snaps[-1]["path"]), "ema")
    last, _, _ = load_model(load_checkpoint(runs[OURS] / "checkpoints" / "last.ckpt"), "ema")
    for a, b in zip(model.state_dict().values(), last.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert shape == (1, 28, 28)


def test_score_and_report_end_to_end(runs, tmp_path: Path) -> None:
    data = training_images(data="synthetic")
    scorer = Scorer(data["train"], data["test"], None, extractor_steps=10, kid_subsets=5)
    out = tmp_path / "scores"
    scores = score_runs(
        runs, out, scorer, n=8, final_n=12, steps=4, peer_with_our_sampler=True, final_seeds=(0, 1)
    )
    recipes = [(s["recipe"], s["step"], s["n"]) for s in scores]
    # the finals are sampled once per final seed, the other snapshots once
    assert sorted(s["seed"] for s in scores if s["recipe"] == OURS) == [0, 0, 1]
    assert sorted(s["seed"] for s in scores if s["recipe"] == PEER) == [0, 0, 1]
    assert not torch.equal(
        torch.load(samples_path(out / "samples", OURS, 20, 12, 0)),
        torch.load(samples_path(out / "samples", OURS, 20, 12, 1)),
    )
    # the peer's final network also went through catdiff's sampler, and only the final one
    assert [r for r in recipes if r[0] == PEER_OUR_SAMPLER] == [(PEER_OUR_SAMPLER, 4, 12)]
    crossed = next(s for s in scores if s["recipe"] == PEER_OUR_SAMPLER)
    assert crossed["nfe"] == 4 and crossed["spacing"] == "logsnr"
    assert recipes[0][0] == "held-out real faces"
    assert (PEER, 4, 12) in recipes and (OURS, 10, 8) in recipes and (OURS, 20, 12) in recipes
    final = next(s for s in scores if s["recipe"] == OURS and s["step"] == 20)
    assert final["nfe"] == 4 and final["sampler"] == "dpm_solver"
    # each line says how its sampler spaced its steps: the recipe's logsnr, the peer's DDIM
    assert final["spacing"] == "logsnr"
    # the detail ratio: the samples' Laplacian energy over the training faces'
    saved = torch.load(samples_path(out / "samples", OURS, 20, 12, final["seed"]))
    assert final["detail"] == pytest.approx(
        laplacian_energy(saved) / laplacian_energy(data["train"])
    )
    assert next(s for s in scores if s["recipe"] == PEER)["spacing"] == "leading"
    assert (
        final["kid"]["mean"] == final["kid"]["mean"] and 0 <= final["copying"]["rate_samples"] <= 1
    )
    # a second call scores nothing new
    again = score_runs(runs, out, scorer, n=8, final_n=12, steps=4, final_seeds=(0, 1))
    assert len(again) == len(scores)
    # ... but one that asks for another sampler stops: the file would mix samplers
    with pytest.raises(UserError, match=r"scores.jsonl already scores .* at 4 evaluations.*not"):
        score_runs(runs, out, scorer, n=8, final_n=12, steps=5, final_seeds=(0, 1))
    assert len(read_scores(out / "scores.jsonl")) == len(scores)
    # finals_only: a larger final at a fresh seed, no snapshot curve rescored
    finals = score_runs(
        runs, tmp_path / "finals", scorer, final_n=16, steps=4, final_seeds=(3,), finals_only=True
    )
    assert sorted((s["recipe"], s["step"], s["n"], s["seed"]) for s in finals[1:]) == [
        (OURS, 20, 16, 3),
        (PEER, 4, 16, 3),
    ]
    # reruns at another training seed: their finals only, whatever finals_only says; the
    # peer's is sampled the peer's way (its DDIM)
    rerun, peer_rerun = training_seed_recipe(5), training_seed_recipe(5, PEER)
    seeded = score_runs(
        {rerun: runs[OURS], peer_rerun: runs[PEER]},
        tmp_path / "seeded",
        scorer,
        final_n=12,
        finals_only_of={rerun, peer_rerun},
    )
    # no sampler= or steps=: catdiff's runs are sampled the way its experiment file says
    name, steps = recipe_sampler()
    assert f"(steps={steps}," in seeded[1]["sampler_config"]
    assert [(s["recipe"], s["step"], s["n"], s["sampler"]) for s in seeded[1:]] == [
        (rerun, 20, 12, name),
        (peer_rerun, 4, 12, "ddim"),
    ]
    assert seeded[2]["nfe"] == 50
    (out / "speed.json").write_text(
        '{"threads": 2, "img_per_s": {"diffusers": 64, "catdiff": 160}}'
    )
    report = write_report(
        out / "scores.jsonl", tmp_path / "report", data["train"], "setup text", budget=256
    )
    text = report.read_text()
    assert "setup text" in text and "catdiff's last scored snapshot is at 320 images" in text
    assert "| 0.0 min |" in text and "| 0.1 min |" in text  # 256/64 s and 320/160 s idle
    assert "| 12 × 2 seeds |" in text and "detail (faces: 1)" in text
    figures = ("kid_vs_images", "kid_vs_wall", "kid_vs_idle_time", "samples", "nearest")
    # the peer's final is at the budget, sampled at 2 seeds and once with catdiff's sampler
    for figure in (*figures, "detail_vs_kid"):
        assert (tmp_path / "report" / "figures" / f"{figure}.png").is_file()


def _line(recipe: str, step: int, kid: float, wall: float) -> dict:
    return {
        "recipe": recipe,
        "step": step,
        "images_seen": step * 64,
        "wall_s": wall,
        "n": 100,
        "kid": {"mean": kid, "std": 0.1},
    }


def test_the_recipe_is_sampled_the_way_its_experiment_file_says() -> None:
    # the seed's experiment: ancestral sampling through all T steps
    assert recipe_sampler("baseline") == ("ddpm", 1000)
    name, steps = recipe_sampler()
    assert name == "dpm_solver" and steps <= 25  # the budget of network evaluations


def test_headline_ratios() -> None:
    peer_lines = [_line(PEER, 1000, 4.0, 600), _line(PEER, 2000, 3.0, 1200)]
    ours_lines = [_line(OURS, 1000, 3.5, 200), _line(OURS, 2000, 0.9, 400)]
    head = headline({PEER: peer_lines, OURS: ours_lines}, budget=128000)
    assert head["kid_ratio"] == pytest.approx(0.3)
    # the first catdiff snapshot at or below the peer's final KID (3.0) is at 400 s of 1200
    assert head["time_ratio"] == pytest.approx(400 / 1200)
    assert [
        (r["images_seen"], r["ratio"])
        for r in at_equal_images({PEER: peer_lines, OURS: ours_lines[1:]})
    ] == [(128000, pytest.approx(0.3))]
    never = headline({PEER: peer_lines, OURS: [_line(OURS, 2000, 3.5, 400)]}, budget=128000)
    assert never["time_ratio"] is None and "never reach" in never["why"][0]
    early = headline({PEER: peer_lines, OURS: ours_lines}, budget=384000)  # still training
    assert early["kid_ratio"] is None and early["time_ratio"] is None
    assert "384,000 images; the peer's last scored snapshot is at 128,000" in early["why"][0]


def test_a_final_scored_at_several_seeds_counts_as_their_mean() -> None:
    lines = [_line(PEER, 2000, 3.0, 1200) | {"seed": 0, "fid": 0.3, "copying": _copy(0.02)}]
    for seed, kid, fid in ((0, 1.0, 0.1), (1, 2.0, 0.2), (2, 3.0, 0.3)):
        lines.append(
            _line(OURS, 2000, kid, 400) | {"seed": seed, "fid": fid, "copying": _copy(0.01)}
        )
    lines.append(_line(OURS, 1000, 9.0, 200) | {"seed": 0, "n": 50})  # fewer samples: kept apart
    runs = curves(lines)
    final = runs[OURS][-1]
    assert final["seeds"] == [0, 1, 2] and final["kid"]["per_seed"] == [1.0, 2.0, 3.0]
    assert final["kid"]["mean"] == pytest.approx(2.0) and final["kid"]["std"] == pytest.approx(1.0)
    assert final["fid"] == pytest.approx(0.2) and final["copying"]["rate_samples"] == 0.01
    assert [line["kid"]["mean"] for line in runs[OURS]] == [9.0, pytest.approx(2.0)]
    assert "seeds" not in runs[PEER][-1]  # one seed: the line as scored
    assert headline(runs, budget=128000)["kid_ratio"] == pytest.approx(2.0 / 3.0)


def test_kid_against_detail_needs_two_finals_at_the_budget(tmp_path: Path) -> None:
    one = {PEER: [_line(PEER, 2000, 3.0, 1200) | {"detail": 0.9}]}
    assert detail_vs_kid(one, None, 128000, tmp_path / "a.png") is None
    two = one | {OURS: [_line(OURS, 2000, 1.0, 400) | {"detail": 0.95}]}
    assert detail_vs_kid(two, None, 64000, tmp_path / "b.png") is None  # not at the budget
    assert "Every final at 128,000 images" in detail_vs_kid(two, None, 128000, tmp_path / "c.png")
    assert (tmp_path / "c.png").is_file() and not (tmp_path / "b.png").exists()


def test_the_recipes_kid_over_training_seeds_is_the_mean_of_each_runs_final() -> None:
    lines = [_line(PEER, 1000, 5.0, 600), _line(PEER, 2000, 3.0, 1200)]
    lines += [_line(OURS, 1000, 2.0, 200), _line(OURS, 2000, 0.9, 400)]
    rerun = training_seed_recipe(1)
    lines += [_line(rerun, 2000, 0.3, 400)]
    lines = [line | {"fid": 0.1, "copying": _copy(0.02)} for line in lines]
    runs = curves(lines)
    assert is_seed_run(rerun) and not is_seed_run(OURS) and not is_seed_run("catdiff-1.6M")
    head = headline(runs, budget=128000)
    assert head["kid_ratio"] == pytest.approx(0.3)  # the curves' run alone, as before
    seeds = head["over_training_seeds"]
    assert seeds["runs"] == {OURS: 0.9, rerun: 0.3}
    assert seeds["mean"] == pytest.approx(0.6) and seeds["ratio"] == pytest.approx(0.2)
    assert seeds["std"] == pytest.approx(0.6 / 2**0.5)
    # a rerun that has not reached the budget does not count; one run alone gives no spread
    short = curves(lines[:-1] + [_line(rerun, 1000, 0.3, 200)])
    assert headline(short, budget=128000)["over_training_seeds"] is None
    text = markdown(runs, None, head, {}, "")
    assert "catdiff's recipe over 2 runs: KID 0.6 ± 0.42" in text
    assert "the curves' run 0.9000; training seed 1 0.3000" in text and "**0.20**" in text
    assert "the peer's over 1 run: KID 3 (one run: its spread over training seeds" in text
    # the peer trained again: the ratio is one of means, each catdiff run against the peer's mean
    peer_rerun = training_seed_recipe(4, PEER)
    assert is_seed_run(peer_rerun) and is_peer(peer_rerun) and not is_peer(rerun)
    both = curves(
        lines + [_line(peer_rerun, 2000, 5.0, 1200) | {"fid": 0.1, "copying": _copy(0.02)}]
    )
    head = headline(both, budget=128000)
    assert head["kid_ratio"] == pytest.approx(0.3)  # still the two curves' runs
    seeds = head["over_training_seeds"]
    assert seeds["peer"]["runs"] == {PEER: 3.0, peer_rerun: 5.0}
    assert seeds["peer"]["mean"] == pytest.approx(4.0) and seeds["ratio"] == pytest.approx(0.15)
    assert seeds["ratios"] == [pytest.approx(0.225), pytest.approx(0.075)]
    text = markdown(both, None, head, {}, "")
    assert (
        "the peer's over 2 runs: KID 4 ± 1.4 (std across runs; the curves' run 3.0000; "
        "training seed 4 5.0000)" in text
    )
    # a peer rerun alone is enough for the bullet, the catdiff side then reads as one run
    alone = curves(
        [line for line in lines if line["recipe"] != rerun]
        + [_line(peer_rerun, 2000, 5.0, 1200) | {"fid": 0.1, "copying": _copy(0.02)}]
    )
    assert headline(alone, budget=128000)["over_training_seeds"]["std"] is None


def test_training_seed_runs_read_each_runs_seed_and_name_bad_folders(tmp_path: Path) -> None:
    for name, seed in (("a", 1), ("b", 2), ("c", 1)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(f"seed: {seed}\n")
    runs = training_seed_runs(f"{tmp_path / 'a'},{tmp_path / 'b'}")
    assert runs == {
        training_seed_recipe(1): tmp_path / "a",
        training_seed_recipe(2): tmp_path / "b",
    }
    assert training_seed_runs(None) == {}
    with pytest.raises(UserError, match="both have seed=1"):
        training_seed_runs(f"{tmp_path / 'a'},{tmp_path / 'c'}")
    with pytest.raises(UserError, match="ours_seeds: .*nowhere.*config.yaml does not exist"):
        training_seed_runs(str(tmp_path / "nowhere"))


def test_peer_seed_runs_read_the_seed_its_snapshots_record(runs, tmp_path: Path) -> None:
    assert training_seed_runs(str(runs[PEER]), PEER) == {training_seed_recipe(0, PEER): runs[PEER]}
    with pytest.raises(UserError, match="peer_seeds: .* and .* both have seed=0"):
        training_seed_runs(f"{runs[PEER]},{runs[PEER]}", PEER)
    with pytest.raises(UserError, match="peer_seeds: .*nowhere has no snapshot"):
        training_seed_runs(str(tmp_path / "nowhere"), PEER)
    with pytest.raises(UserError, match="peer_seeds: .*step0000020.ckpt does not record its"):
        training_seed_runs(str(runs[OURS]), PEER)  # a catdiff run is not a peer run


def _copy(rate: float) -> dict:
    return {"rate_samples": rate, "rate_se": 0.01, "median_nn_samples": 1.0}


def test_seed_lists_are_parsed_and_bad_ones_name_the_key() -> None:
    assert parse(["final_seeds=0,1,2"], {"final_seeds": ()}, "x")["final_seeds"] == (0, 1, 2)
    with pytest.raises(UserError, match="final_seeds=0,a must be comma-separated integers"):
        parse(["final_seeds=0,a"], {"final_seeds": ()}, "x")


def test_make_vs_peer_runs_every_stage_and_reruns_without_retraining(tmp_path: Path) -> None:
    args = [
        "experiments.vs_diffusers",
        "data=synthetic",
        "steps=4",
        "snapshot_every=2",
        "n=6",
        "final_n=8",
        "final_seeds=0,1",
        "training_seeds=7",
        "peer_seeds=7",
        "sampler_steps=3",
        "extractor_steps=10",
        f"runs={tmp_path / 'runs'}",
        f"out={tmp_path / 'report'}",
    ]
    run(args)
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert "## Headline" in text and "KID at the peer's budget" in text  # 256 images each
    scores = (tmp_path / "runs" / "scores" / "scores.jsonl").read_text().splitlines()
    # held-out faces + 2 snapshots per run + the final one again at the second seed, and the
    # final alone (at both seeds) of catdiff's and the peer's reruns at training seed 7
    assert len(scores) == 1 + 2 + 2 + 2 + 2 + 2
    assert "| 8 × 2 seeds |" in text
    assert "catdiff's recipe over 2 runs" in text and "the peer's over 2 runs" in text
    assert text.count("training seed 7") >= 2
    # both recipes' finals (2 runs x 2 sampling seeds each) against their detail ratio
    assert "KID against fine detail, every final" in text
    assert (tmp_path / "report" / "figures" / "detail_vs_kid.png").is_file()
    config = (tmp_path / "runs" / "catdiff_seed7" / "config.yaml").read_text()
    assert "seed: 7" in config
    assert training_seed_runs(str(tmp_path / "runs" / "peer_seed7"), PEER)
    run(args)  # finished runs are not retrained, scored snapshots not rescored
    assert (tmp_path / "runs" / "scores" / "scores.jsonl").read_text().splitlines() == scores
    bad = run(["experiments.vs_diffusers", "stepz=4"], check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: 'stepz=4' is not an option of python -m experiments.vs_diffusers; options: "
        "out= runs= steps= snapshot_every= n= final_n= final_seeds= training_seeds= peer_seeds= "
        "sampler= "
        "sampler_steps= train= "
        "extractor_steps= data= data_root="
    ]
    bad = run(["experiments.vs_diffusers.peer", "steps=many"], check=False)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: steps=many must be an int"


def test_peer_sampling_keeps_no_autograd_graph() -> None:
    """Autograd through 50 DDIM steps at n=500 took 23 GB and the OOM killer ended scoring."""
    from types import SimpleNamespace

    modes = []

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x, t):
            modes.append(torch.is_inference_mode_enabled())
            return SimpleNamespace(sample=self.w * 0.1 * x)

    images = peer.sample(Net(), n=3, steps=4)
    assert images.dtype == torch.uint8 and images.shape == (3, 1, 28, 28)
    assert modes == [True] * 4
