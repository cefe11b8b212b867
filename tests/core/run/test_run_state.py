"""A run's outputs follow its options: re-running into a folder with changed options leaves exactly what a fresh
run with those options writes; new edits and transfers of finished images reuse the saved latents and deltas; edit
of a run folder pastes back; transfer computes missing ReStyle latents once or says what to get; summaries
accumulate; messages lead somewhere; deltas can be stored in half precision."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED
from PIL import Image

from hyperstyle_core import WeightDeltas, load
from hyperstyle_core.cli import main
from hyperstyle_core.inversion import generate
from hyperstyle_core.io.latents import load_latent
from hyperstyle_core.run import steps as steps_module
from hyperstyle_core.run.manifest import throughput
from hyperstyle_core.run.options import RunOptions
from hyperstyle_core.run.runner import run_folder

PHOTOS = SHARED / "data" / "photos"
FACES = ("aligned_bezos.jpg", "aligned_blunt.jpg")     # small aligned portraits: dlib finds them quickly
# Deltas stored in half precision are rounded to nearest: relative error at most 2^-11 (float16; values under
# 6.1e-5 become subnormal, spaced 2^-24) or 2^-8 (bfloat16). A render from them differed from the float32 render by
# at most 2.4e-7 (float16) and 1.2e-7 (bfloat16) in [-1, 1] image units on the tiny models (whose deltas are
# ~3e-5); the bound keeps a margin. Full-size numbers: README, Command line.
ROUNDING = {"float16": (2.0 ** -11, 2.0 ** -25), "bfloat16": (2.0 ** -8, 0.0)}
HALF_DELTAS_RENDER_ERROR = 1e-6


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny models, tiny age/smile directions and two tiny transfer generators (toonify, cartoon)."""
    from hyperstyle_core.testing import write_tiny_run_models
    return write_tiny_run_models(tmp_path_factory.mktemp("tiny_models"), {"toonify": 3, "cartoon": 5})


@pytest.fixture()
def models(tiny, tmp_path) -> Path:
    """A copy of the tiny models that a test may change."""
    return Path(shutil.copytree(tiny, tmp_path / "models"))


@pytest.fixture()
def crops(tmp_path) -> Path:
    """Two smooth random pictures (aligned crops for --no-align runs)."""
    folder = tmp_path / "crops"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        small = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
        Image.fromarray(small).resize((96, 96), Image.BICUBIC).save(folder / f"img_{i}.png")
    return folder


@pytest.fixture()
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in FACES:
        shutil.copy(PHOTOS / name, folder / name)
    return folder


@pytest.fixture()
def inversions(monkeypatch) -> list[int]:
    """Counts the images inverted (the HyperStyle inversion in run.steps)."""
    counted: list[int] = []
    real = steps_module.invert

    def counting(x, *args, **kwargs):
        counted.append(x.shape[0])
        return real(x, *args, **kwargs)
    monkeypatch.setattr(steps_module, "invert", counting)
    return counted


def run(inputs: Path, output: Path, models: Path, *extra: str, command: str = "run") -> int:
    where = ["--input", str(inputs)] if command == "run" else [str(inputs)]
    return main([command, *where, "--output", str(output), "--models", str(models), "--device", "cpu",
                 "--iterations", "1", "--quiet", *extra])


def contents(folder: Path) -> dict[str, bytes]:
    """Every output file's bytes (not the run's own records)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if not p.name.startswith(".") and p.name not in ("manifest.jsonl", "summary.json")}


def assert_same_outputs(rerun: Path, fresh: Path) -> None:
    got, want = contents(rerun), contents(fresh)
    assert sorted(got) == sorted(want)
    assert [n for n in want if got[n] != want[n]] == []


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------- 1: re-runs


W = ("--no-align", "--transfer-latent", "w")


@pytest.mark.parametrize("before, after, inverted", [
    pytest.param(["--edit", "age=+3"], ["--edit", "age=+1"], 0, id="edit-factor"),
    pytest.param(["--edit", "age=+3"], ["--edit", "age=+3,smile=-1"], 0, id="edit-added"),
    pytest.param(["--edit", "age=+3,smile=-1"], ["--edit", "age=+3"], 0, id="edit-removed"),
    pytest.param(["--edit", "age=+3"], ["--edit", "age=+3", "--iterations", "2"], 2, id="iterations"),
    pytest.param(["--edit", "age=+3"], ["--edit", "age=+3", "--fast"], 2, id="fast-mode"),
    pytest.param(["--transfer", "toonify"], ["--transfer", "cartoon"], 0, id="transfer-generator"),
    pytest.param(["--edit", "age=1"], ["--edit", "age=1", "--transfer", "toonify"], 0, id="transfer-added"),
    pytest.param([], ["--save-deltas", "float16"], 0, id="deltas-dtype"),
    pytest.param([], ["--save-deltas", "none"], 0, id="no-deltas"),
    pytest.param([], ["--no-save-latents", "--edit", "smile=2"], 0, id="no-latents-and-an-edit"),
])
def test_a_rerun_with_changed_options_leaves_what_a_fresh_run_writes(tiny, crops, tmp_path, inversions, before,
                                                                     after, inverted):
    again, fresh = tmp_path / "again", tmp_path / "fresh"
    assert run(crops, again, tiny, *W, *before) == 0
    inversions.clear()
    assert run(crops, again, tiny, *W, *after) == 0
    assert sum(inversions) == inverted
    assert run(crops, fresh, tiny, *W, *after) == 0
    assert_same_outputs(again, fresh)
    last = {r["file"]: r for r in records(again)}
    assert all(r["status"] == "ok" and set(r["outputs"]) == set(r["keys"]) for r in last.values())
    # And now it is done: nothing is rendered again.
    inversions.clear()
    summary = run_folder(crops, again, _options(tiny, after))
    assert (summary.already_done, summary.ok, sum(inversions)) == (2, 0, 0)


def _options(models: Path, args: list[str]) -> RunOptions:
    """The RunOptions of `run ... *W *args`, as the command builds them."""
    from hyperstyle_core.cli.parser import build_parser
    from hyperstyle_core.cli.run_options import run_options
    parsed = build_parser().parse_args(["run", "--input", "x", "--models", str(models), "--device", "cpu",
                                        "--iterations", "1", *W, *args])
    return run_options(parsed)


@pytest.mark.parametrize("changed, inverted", [("hyperstyle_ffhq.safetensors", 2), ("age.safetensors", 0),
                                               ("toonify.safetensors", 0)])
def test_a_changed_model_file_recomputes_what_it_made(models, crops, tmp_path, inversions, changed, inverted):
    from hyperstyle_core import convert
    from hyperstyle_core.io.checkpoints import save_model
    from hyperstyle_core.testing import make_tiny_models, tiny_generator

    again, fresh = tmp_path / "again", tmp_path / "fresh"
    args = (*W, "--edit", "age=2", "--transfer", "toonify")
    assert run(crops, again, models, *args) == 0
    if changed == "hyperstyle_ffhq.safetensors":
        save_model(make_tiny_models(seed=7)[0], models / changed, "tiny")
    elif changed == "age.safetensors":
        torch.save(torch.randn(1, 32, generator=torch.Generator().manual_seed(9)), models / "age.pt")
        convert(models / "age.pt", models)
    else:
        save_model(tiny_generator(seed=8), models / changed, "tiny")
    inversions.clear()
    assert run(crops, again, models, *args) == 0
    assert sum(inversions) == inverted
    assert run(crops, fresh, models, *args) == 0
    assert_same_outputs(again, fresh)


@pytest.mark.parametrize("before, after", [([], ["--no-align"]), (["--no-align"], [])], ids=["align-off", "align-on"])
def test_switching_alignment_leaves_what_a_fresh_run_writes(tiny, photos, tmp_path, before, after):
    again, fresh = tmp_path / "again", tmp_path / "fresh"
    common = ("--align-size", "128", "--edit", "age=2")
    assert run(photos, again, tiny, *common, *before) == 0
    assert run(photos, again, tiny, *common, *after) == 0
    assert run(photos, fresh, tiny, *common, *after) == 0
    assert_same_outputs(again, fresh)


def test_adding_an_edit_to_a_finished_run_neither_inverts_nor_aligns(tiny, photos, tmp_path, inversions,
                                                                      monkeypatch, capsys):
    again, fresh = tmp_path / "again", tmp_path / "fresh"
    assert run(photos, again, tiny, "--align-size", "128", "--edit", "age=+3") == 0
    assert sum(inversions) == 2
    inversions.clear()
    aligned: list[str] = []
    real_detect = steps_module.detect_faces

    def counting_detect(image, name="image", *args, **kwargs):
        aligned.append(name)
        return real_detect(image, name, *args, **kwargs)
    monkeypatch.setattr(steps_module, "detect_faces", counting_detect)
    capsys.readouterr()
    assert run(photos, again, tiny, "--align-size", "128", "--edit", "age=+3,smile=-1") == 0
    assert (sum(inversions), aligned) == (0, [])
    assert "2 ok, 0 skipped, 0 errors, 2 rendered from saved latents" in capsys.readouterr().out
    new = records(again)[2:]
    assert [r["file"] for r in new] == list(FACES)
    assert all(r["settings"]["edits"] == {"age": ["age", 3.0], "smile": ["smile", -1.0]} for r in new)
    assert run(photos, fresh, tiny, "--align-size", "128", "--edit", "age=+3,smile=-1") == 0
    assert_same_outputs(again, fresh)     # the pasted smile images too: same photo, same alignment record


def test_edit_and_align_into_existing_folders_replace_stale_outputs(tiny, crops, photos, tmp_path):
    edited, fresh = tmp_path / "edited", tmp_path / "fresh"
    assert run(crops, edited, tiny, "--no-align", "--edit", "age=+3", command="edit") == 0
    stale = (edited / "img_0_age.png").read_bytes()
    assert run(crops, edited, tiny, "--no-align", "--edit", "age=-2", command="edit") == 0
    assert run(crops, fresh, tiny, "--no-align", "--edit", "age=-2", command="edit") == 0
    assert_same_outputs(edited, fresh)
    assert (edited / "img_0_age.png").read_bytes() != stale

    crops_dir, fresh_crops = tmp_path / "aligned", tmp_path / "aligned_fresh"
    for size, folder in (("128", crops_dir), ("64", crops_dir), ("64", fresh_crops)):
        assert main(["align", str(photos), "--output", str(folder), "--align-size", size, "--quiet"]) == 0
    assert_same_outputs(crops_dir, fresh_crops)
    with Image.open(crops_dir / "aligned_bezos_aligned.png") as im:
        assert im.size == (64, 64)


def test_outputs_of_a_removed_edit_are_deleted_and_only_ours(tiny, crops, tmp_path):
    out = tmp_path / "out"
    assert run(crops, out, tiny, *W, "--edit", "age=1,smile=1") == 0
    (out / "img_0_notes.txt").write_text("mine")      # not written by the runner: never touched
    assert run(crops, out, tiny, *W, "--edit", "age=1") == 0
    assert not (out / "img_0_smile.png").exists() and (out / "img_0_age.png").exists()
    assert (out / "img_0_notes.txt").read_text() == "mine"
    # A planted record cannot make the runner delete other files.
    victim = out / "keep.png"
    victim.write_bytes(b"x")
    with open(out / "manifest.jsonl", "a") as f:
        f.write(json.dumps({"file": "img_1.png", "status": "ok", "out": "img_1",
                            "outputs": ["keep.png", "../keep.png", "manifest.jsonl", "img_1_inversion.png"]}) + "\n")
    assert run(crops, out, tiny, *W, "--edit", "age=1") == 0
    assert victim.exists() and (out / "manifest.jsonl").exists() and (out / "img_1_inversion.png").exists()


# ---------------------------------------------------------------------------------------------- 2: paste back


def test_edit_of_a_run_folder_pastes_back_like_run(tiny, photos, tmp_path):
    out, edited, fresh = tmp_path / "out", tmp_path / "edited", tmp_path / "fresh"
    assert run(photos, out, tiny, "--align-size", "128") == 0
    assert run(out, edited, tiny, "--edit", "age=+2", command="edit") == 0
    stems = [Path(n).stem for n in FACES]
    assert set(contents(edited)) == {f"{s}_{k}" for s in stems for k in ("age.png", "age_pasted.png")}
    assert run(photos, fresh, tiny, "--align-size", "128", "--edit", "age=+2") == 0
    for name, data in contents(edited).items():
        assert data == (fresh / name).read_bytes(), name
    with Image.open(edited / f"{stems[0]}_age_pasted.png") as im:
        assert im.size == Image.open(PHOTOS / FACES[0]).size
    # Without the photo there is nothing to paste into: the edits alone, and no error.
    (photos / FACES[0]).unlink()
    again = tmp_path / "again"
    assert run(out, again, tiny, "--edit", "age=+2", command="edit") == 0
    assert f"{stems[0]}_age_pasted.png" not in contents(again) and f"{stems[1]}_age_pasted.png" in contents(again)


# ---------------------------------------------------------------------------------------------- 3: transfer


def test_transfer_of_a_run_without_restyle_latents_says_once_what_to_get(tiny, crops, tmp_path, capsys):
    out, toon = tmp_path / "out", tmp_path / "toon"
    assert run(crops, out, tiny, "--no-align") == 0
    capsys.readouterr()
    assert run(out, toon, tiny, "--transfer", "toonify", command="transfer") == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "no_restyle_latent" not in err
    assert "2 of the 2 saved latents" in err and "hold no ReStyle-e4e latent" in err
    assert "hyperstyle download restyle_e4e_ffhq_encode" in err and "--transfer-latent w" in err
    assert not toon.exists()     # stopped before anything was written
    assert run(out, toon, tiny, "--transfer", "toonify", "--transfer-latent", "w", command="transfer") == 0


# ---------------------------------------------------------------------------------------------- 4: messages


def test_no_models_says_download_and_leaves_nothing_behind(tiny, crops, tmp_path, capsys):
    empty, out = tmp_path / "empty_models", tmp_path / "out"
    empty.mkdir()
    assert run(crops, out, empty, "--no-align") == 2
    err = capsys.readouterr().err
    assert "hyperstyle_ffhq.safetensors does not exist" in err and "`hyperstyle download faces`" in err
    assert "hyperstyle convert" in err
    assert not out.exists()     # no manifest, no lock file, no folder
    out.mkdir()
    assert run(crops, out, empty, "--no-align") == 2
    assert list(out.iterdir()) == []


def test_a_mistyped_edit_name_suggests_the_known_ones(tiny, crops, tmp_path, capsys):
    assert run(crops, tmp_path / "out", tiny, "--no-align", "--edit", "agee=1") == 2
    err = capsys.readouterr().err
    assert "edit 'agee': no agee.safetensors or agee.pt in" in err and "Did you mean age?" in err
    assert "hyperstyle download agee" not in err and "hyperstyle download age smile pose" in err
    assert run(crops, tmp_path / "out", tiny, "--no-align", "--edit", "pose=1") == 2
    assert "Download it with `hyperstyle download pose`" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_photo_without_a_face_is_reported_once(tiny, tmp_path, capsys, caplog):
    src = tmp_path / "in"
    src.mkdir()
    noise = np.random.default_rng(1).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    Image.fromarray(noise).save(src / "noise.png")
    with caplog.at_level("INFO"):
        assert run(src, tmp_path / "out", tiny) == 0
    err = capsys.readouterr().err
    assert err.count("No face found") == 1 and "skipped: noise.png: No face found in noise.png" in err
    assert not [r for r in caplog.records if "no face" in r.getMessage().lower()]


# ---------------------------------------------------------------------------------------------- 5: summary


def test_summary_keeps_every_run_and_the_totals(tiny, crops, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(crops, out, tiny, "--no-align") == 0
    first = json.loads((out / "summary.json").read_text())
    assert run(crops, out, tiny, "--no-align") == 0     # nothing to do
    assert "images/s" not in capsys.readouterr().out.splitlines()[-2]
    summary = json.loads((out / "summary.json").read_text())
    assert [r["ok"] for r in summary["runs"]] == [2, 0] and summary["runs"][1]["already_done"] == 2
    assert summary["ok"] == 2 and summary["runs_total"] == 2
    assert summary["images_per_second"] == first["images_per_second"] > 0
    assert summary["seconds"] == first["seconds"] > 0
    assert throughput(1, 24.1) == "0.041 images/s (24.1 s per image)"
    assert throughput(10, 4.0) == "2.5 images/s"
    (out / "summary.json").write_text("[not a summary")     # damaged: the totals start again
    (out / "img_0_inversion.png").unlink()
    assert run(crops, out, tiny, "--no-align") == 0
    assert json.loads((out / "summary.json").read_text())["runs_total"] == 1


# ---------------------------------------------------------------------------------------------- 6: deltas storage


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_deltas_are_half_the_size_and_render_closely(tiny, crops, tmp_path, dtype):
    exact, half = tmp_path / "exact", tmp_path / "half"
    assert run(crops, exact, tiny, "--no-align") == 0
    assert run(crops, half, tiny, "--no-align", "--save-deltas", dtype) == 0
    exact_file, half_file = exact / "img_0_deltas.safetensors", half / "img_0_deltas.safetensors"
    assert half_file.stat().st_size < 0.55 * exact_file.stat().st_size
    stored, originals = WeightDeltas.load(half_file), WeightDeltas.load(exact_file)
    assert {t.dtype for t in stored.values()} == {getattr(torch, dtype)}
    relative, floor = ROUNDING[dtype]
    for name, t in originals.items():
        assert ((stored[name].float() - t).abs() <= t.abs() * relative + floor).all(), name
    hs = load(tiny / "hyperstyle_ffhq.safetensors", device="cpu")
    latent = load_latent(exact / "img_0_latent.safetensors")
    reference = generate(hs.generator, latent, originals)
    rounded = generate(hs.generator, latent, stored.to(dtype=torch.float32))
    assert (rounded - reference).abs().max() < HALF_DELTAS_RENDER_ERROR
    # edit and transfer read them
    edited = tmp_path / "edited"
    assert run(half, edited, tiny, "--edit", "age=1", command="edit") == 0
    assert run(half, edited, tiny, "--transfer", "toonify", "--transfer-latent", "w", command="transfer") == 0
    assert {"img_0_age.png", "img_0_toonify.png"} <= set(contents(edited))
