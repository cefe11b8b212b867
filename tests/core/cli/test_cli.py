"""The command line: convert official files, invert aligned photos, clear errors."""
from __future__ import annotations

import shutil

import pytest
from PIL import Image

from conftest import SHARED
from hyperstyle_core import WeightDeltas, load
from hyperstyle_core.cli import main


@pytest.mark.slow
def test_convert_and_invert_a_photo(converted, tmp_path, capsys):
    models = tmp_path / "models"
    # The CLI converts official .pt files, keeping their stem.
    src = converted.pt("stylegan2_256", name="stylegan2-ffhq-config-f")
    assert main(["convert", str(src), "--out", str(models)]) == 0
    assert (models / "stylegan2-ffhq-config-f.safetensors").exists()
    assert "stylegan2" in capsys.readouterr().out
    shutil.copy(converted("hyperstyle_ffhq_256"), models / "hyperstyle_ffhq.safetensors")
    shutil.copy(converted("faces_w_encoder_256"), models / "faces_w_encoder.safetensors")

    photo = SHARED / "data" / "photos" / "aligned_affleck.jpg"
    out = tmp_path / "out"
    code = main(["invert", str(photo), "--models", str(models), "--out", str(out), "--iterations", "2",
                 "--save-iterations", "--device", "cpu"])
    assert code == 0
    image = Image.open(out / "aligned_affleck_inversion.png")
    assert image.size == (256, 256) and image.mode == "RGB"
    assert (out / "aligned_affleck_iter1.png").exists() and (out / "aligned_affleck_iter2.png").exists()
    deltas = WeightDeltas.load(out / "aligned_affleck_deltas.safetensors")
    assert deltas.batch_size == 1 and deltas.signature.size == 256
    hs = load(models / "hyperstyle_ffhq.safetensors", device="cpu")
    deltas.check_compatible(hs.generator)
    assert not list(out.glob("*.partial"))


def test_bad_files_are_reported_and_skipped(models_256, converted, tmp_path, capsys):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(converted("hyperstyle_ffhq_256"), models / "hyperstyle_ffhq.safetensors")
    shutil.copy(converted("faces_w_encoder_256"), models / "faces_w_encoder.safetensors")
    bad = tmp_path / "not_an_image.jpg"
    bad.write_text("hello")
    out = tmp_path / "out"
    code = main(["invert", str(bad), "--models", str(models), "--out", str(out), "--device", "cpu"])
    assert code == 1
    captured = capsys.readouterr()
    assert "not_an_image.jpg could not be read as an image" in captured.out + captured.err
    assert not list(out.glob("not_an_image*"))


def test_missing_models_give_a_clear_error(tmp_path, capsys):
    code = main(["invert", "x.jpg", "--models", str(tmp_path), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err
    assert "hyperstyle_ffhq.safetensors does not exist" in err and "`hyperstyle download faces`" in err
    assert "hyperstyle convert" in err and not (tmp_path / "out").exists()


def test_convert_rejects_garbage(tmp_path, capsys):
    junk = tmp_path / "hyperstyle_ffhq.pt"
    junk.write_bytes(b"\x00" * 100)
    assert main(["convert", str(junk), "--out", str(tmp_path)]) == 1
    assert "safe loader" in capsys.readouterr().err
    assert not (tmp_path / "hyperstyle_ffhq.safetensors").exists()


def test_clashing_names_from_several_folders_never_overwrite(tmp_path, capsys):
    import numpy as np

    from hyperstyle_core.testing import write_tiny_models
    models = tmp_path / "models"
    models.mkdir()
    write_tiny_models(models)
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    d1.mkdir()
    d2.mkdir()
    rng = np.random.default_rng(0)
    for path in (d1 / "a.png", d1 / "a.jpg", d2 / "a.png"):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    out = tmp_path / "out"
    code = main(["invert", str(d1), str(d2), str(d1 / "a.png"), "--models", str(models), "--out", str(out),
                 "--iterations", "1", "--device", "cpu"])
    assert code == 0
    inversions = sorted(p.name for p in out.glob("*_inversion.png"))
    assert inversions == ["a_jpg_inversion.png", "a_png_2_inversion.png", "a_png_inversion.png"]
    assert len({(out / n).read_bytes() for n in inversions}) == 3     # three different results, none overwritten
    assert len(list(out.glob("*_latent.safetensors"))) == len(list(out.glob("*_deltas.safetensors"))) == 3
    assert "a.png: " in capsys.readouterr().out     # progress lines name the files
    # The folder commands (align, edit, transfer, run) name them the same way through the runner.
    again = tmp_path / "again"
    assert main(["run", "--input", str(d1), str(d2), "--output", str(again), "--models", str(models), "--device",
                 "cpu", "--iterations", "1", "--no-align", "--no-save-latents", "--quiet"]) == 0
    assert sorted(p.name for p in again.glob("*.png")) == inversions
