"""The other folder commands and the runner's rules: `hyperstyle align`, the official chain on recipe weights,
setup errors before any work, one run per output folder, output names, the registered commands, --edit parsing."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from hyperstyle_core import AlignmentInfo
from hyperstyle_core.cli import main
from hyperstyle_core.io.folders import collect_inputs
from hyperstyle_core.io.latents import load_latent_file, save_latent
from hyperstyle_core.run.naming import assign_output_stems, output_names, unique_stems
from hyperstyle_core.run.manifest import read_manifest
from hyperstyle_core.run.options import RunOptions, parse_edits
from hyperstyle_core.run.runner import run_folder
from run_helpers import PHOTOS, records, synthetic_images, tiny_args, visible_files


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny models (64px generator) plus tiny age/smile directions and a tiny 'toonify' generator."""
    from hyperstyle_core.testing import write_tiny_run_models
    return write_tiny_run_models(tmp_path_factory.mktemp("tiny_models"))


def test_align_command_and_manifest_for_a_photo(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "portrait.jpg").symlink_to(PHOTOS / "face_image.jpg")
    (src / "car.jpg").symlink_to(PHOTOS / "car_image.jpg")
    out = tmp_path / "out"
    assert main(["align", str(src), "--output", str(out), "--align-size", "256", "--quiet"]) == 0
    assert visible_files(out) == {"portrait_aligned.png", "portrait_alignment.json"}
    with Image.open(out / "portrait_aligned.png") as im:
        assert im.size == (256, 256)
    info = AlignmentInfo.from_dict(json.loads((out / "portrait_alignment.json").read_text()))
    assert (info.source_width, info.source_height) == Image.open(PHOTOS / "face_image.jpg").size
    by_file = {r["file"]: r for r in records(out)}
    assert by_file["car.jpg"]["status"] == "skipped" and by_file["car.jpg"]["code"] == "no_face"


@pytest.mark.slow
def test_official_chain_with_recipe_weights(models_dir, tmp_path):
    """run on an unaligned photo with the 256 recipe checkpoints: align, invert, age edit, ReStyle-e4e Toonify."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "face_image.jpg").symlink_to(PHOTOS / "face_image.jpg")
    out = tmp_path / "out"
    assert main(["run", "--input", str(src), "--output", str(out), "--models", str(models_dir), "--device", "cpu",
                 "--iterations", "1", "--edit", "age=+3", "--transfer", "toonify", "--quiet"]) == 0
    stem = "face_image"
    assert visible_files(out) == {f"{stem}_{k}" for k in (
        "aligned.png", "alignment.json", "inversion.png", "pasted.png", "age.png", "age_pasted.png", "toonify.png",
        "latent.safetensors", "deltas.safetensors")}
    with Image.open(out / f"{stem}_pasted.png") as im:
        assert im.size == Image.open(PHOTOS / "face_image.jpg").size
    from safetensors import safe_open
    with safe_open(str(out / f"{stem}_latent.safetensors"), "pt") as f:
        assert set(f.keys()) == {"latent", "restyle_latent"} and f.get_tensor("restyle_latent").shape == (1, 14, 512)
    # The saved latent + deltas can be edited and transferred again without the photo.
    again = tmp_path / "again"
    assert main(["edit", str(out), "--output", str(again), "--models", str(models_dir), "--device", "cpu",
                 "--edit", "smile=+2", "--quiet"]) == 0
    assert main(["transfer", str(out), "--output", str(again), "--models", str(models_dir), "--device", "cpu",
                 "--transfer", "toonify.safetensors", "--quiet"]) == 0
    # edit pastes back (the run recorded the photo and its alignment); transfer keeps edit's outputs
    assert visible_files(again) == {f"{stem}_smile.png", f"{stem}_smile_pasted.png", f"{stem}_toonify.png"}
    np.testing.assert_array_equal(np.asarray(Image.open(again / f"{stem}_toonify.png")),
                                  np.asarray(Image.open(out / f"{stem}_toonify.png")))
    with Image.open(again / f"{stem}_smile_pasted.png") as im:
        assert im.size == Image.open(PHOTOS / "face_image.jpg").size

    # A run folder whose latents hold no ReStyle latent (a run without --transfer): transfer computes them once,
    # from the saved aligned crops, stores them, and renders exactly what `run --transfer` rendered.
    plain = tmp_path / "plain"
    shutil.copytree(out, plain)
    latent_file = plain / f"{stem}_latent.safetensors"
    saved = load_latent_file(latent_file)
    save_latent(latent_file, saved["latent"], extra_metadata={"source_image": "face_image.jpg"})
    toon = tmp_path / "toon"
    assert main(["transfer", str(plain), "--output", str(toon), "--models", str(models_dir), "--device", "cpu",
                 "--transfer", "toonify", "--quiet"]) == 0
    assert (toon / f"{stem}_toonify.png").read_bytes() == (out / f"{stem}_toonify.png").read_bytes()
    assert torch.equal(load_latent_file(latent_file)["restyle_latent"], saved["restyle_latent"])


def test_clear_errors_before_any_work(tiny, tmp_path, capsys):
    src = tmp_path / "in"
    synthetic_images(src, 1)
    out = tmp_path / "out"

    def run(*extra):
        code = main(["run", "--input", str(src), "--output", str(out), *tiny_args(tiny, "--no-align"), *extra])
        return code, capsys.readouterr().err
    code, err = run("--edit", "age+3")
    assert code == 2 and "cannot read the edit 'age+3': write NAME=FACTOR" in err
    code, err = run("--edit", "beard=1")
    assert code == 2 and "edit 'beard': no beard.safetensors or beard.pt in" in err and "hyperstyle download" in err
    code, err = run("--transfer", "pixar")
    assert code == 2 and "transfer generator pixar was not found" in err
    code, err = run("--transfer", "toonify")
    assert code == 2 and "restyle_e4e_ffhq_encode.safetensors does not exist" in err and "--transfer-latent w" in err
    code, err = run("--edit", "age=1,age=1")
    assert code == 2 and "repeat one another" in err
    code, err = run("--edit", "aligned=1")
    assert code == 2 and "cannot name an edit or transfer output" in err
    code = main(["run", "--input", str(src), "--output", str(src), *tiny_args(tiny)])
    assert code == 2 and "cannot also be an input" in capsys.readouterr().err
    code = main(["run", "--input", str(tmp_path / "nope"), "--output", str(out), *tiny_args(tiny)])
    assert code == 2 and "does not exist" in capsys.readouterr().err
    code = main(["run", "--input", str(src), "--output", str(out), "--models", str(tmp_path), "--quiet"])
    assert code == 2 and "hyperstyle_ffhq.safetensors does not exist" in capsys.readouterr().err
    assert not list(out.glob("*.png"))


def test_one_run_per_output_folder(tiny, tmp_path):
    import fcntl
    src, out = tmp_path / "in", tmp_path / "out"
    synthetic_images(src, 1)
    out.mkdir()
    with open(out / ".hyperstyle_run.lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(ValueError, match="another hyperstyle run is writing to"):
            run_folder(src, out, RunOptions(models=tiny, align=False, device="cpu"))


def test_output_names_are_unique_and_stable(tmp_path):
    for name in ("a.jpg", "a.png", "A.webp", "b.jpg", "a_png.jpg", "c.jpeg"):
        (tmp_path / name).write_bytes(b"x")
    options = RunOptions(edits=parse_edits("png=1"))
    items = collect_inputs([tmp_path])
    stems = assign_output_stems(items, options)
    assert stems == {"A.webp": "A_webp", "a.jpg": "a_jpg", "a.png": "a_png", "a_png.jpg": "a_png_jpg", "b.jpg": "b",
                     "c.jpeg": "c"}
    files = [n.lower() for item in items for n in output_names(stems[item.key], options)]
    assert len(files) == len(set(files))     # a.jpg's "png" edit and a_png.jpg's files never collide
    assert assign_output_stems(items, options) == stems
    # A name recorded by an earlier run is kept when new files arrive.
    (tmp_path / "b.png").write_bytes(b"x")
    later = assign_output_stems(collect_inputs([tmp_path]), RunOptions(), previous={"b.jpg": "b"})
    assert later["b.jpg"] == "b" and later["b.png"] == "b_png"
    # With a "png" edit, b.jpg writes b_png.png and b_png_pasted.png, so b.png cannot be "b_png".
    assert assign_output_stems(collect_inputs([tmp_path]), options, previous={"b.jpg": "b"})["b.png"] == "b_png_2"
    assert unique_stems(["x/a.jpg", "a.png", "b.jpg"]) == ["a_jpg", "a_png", "b"]


def test_every_command_is_registered():
    import argparse

    from hyperstyle_core.cli.parser import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert {"download", "convert", "align", "invert", "edit", "transfer", "run", "bench", "ganspace",
            "animate"} <= set(sub.choices)


def test_parse_edits():
    assert parse_edits("age=+3,smile=-1.5") == parse_edits(["age=3", "smile=-1.5"])
    assert [(e.name, e.factor) for e in parse_edits(["age=+3, smile=-1", "pose=2"])] == [
        ("age", 3.0), ("smile", -1.0), ("pose", 2.0)]
    for bad in ("age", "age=x", "=3", "age=inf", "../x=1"):
        with pytest.raises(ValueError, match="write NAME=FACTOR"):
            parse_edits(bad)
    assert read_manifest("/nonexistent/manifest.jsonl") == {}
