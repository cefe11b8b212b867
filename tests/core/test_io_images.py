"""Reading folders of photos as one batch, fitting sizes, saving PNGs under input names."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hyperstyle_core.io.images import fit_to_size, read_image_batch, save_png
from hyperstyle_core.run.naming import named_png_files


def _photo(path, size, colour=(200, 40, 10)):
    Image.new("RGB", size, colour).save(path)
    return path


def test_fit_modes_keep_aspect_or_fill():
    wide = Image.new("RGB", (200, 100), (255, 255, 255))
    padded = np.asarray(fit_to_size(wide, (100, 100), "pad"))
    assert padded.shape == (100, 100, 3)
    assert padded[0, 50].sum() == 0 and padded[50, 50].min() == 255      # black bars above, photo in the middle
    assert np.asarray(fit_to_size(wide, (100, 100), "crop")).min() == 255  # covers: no bars
    assert fit_to_size(wide, (80, 120), "stretch").size == (80, 120)
    assert fit_to_size(wide, (200, 100), "pad") is wide
    with pytest.raises(ValueError, match=r"fit mode must be one of \['pad', 'crop', 'stretch'\], got 'zoom'"):
        fit_to_size(wide, (10, 10), "zoom")


def test_read_image_batch_skips_and_reports_bad_files(tmp_path):
    first = _photo(tmp_path / "a.png", (96, 64))
    (tmp_path / "b.jpg").write_bytes(b"not a picture")
    small = _photo(tmp_path / "c.png", (32, 32))
    rotated = tmp_path / "d.png"
    Image.new("L", (64, 96), 128).save(rotated)
    ticks = []
    batch = read_image_batch([first, tmp_path / "b.jpg", small, rotated, tmp_path / "gone.png"], "stretch",
                             on_file=lambda: ticks.append(1))
    assert len(ticks) == 5
    assert batch.names == ["a.png", "d.png"]
    assert batch.pixels.shape == (2, 64, 96, 3) and batch.pixels.dtype == torch.float32
    assert torch.allclose(batch.pixels[0, 0, 0], torch.tensor([200, 40, 10]) / 255.0)
    assert torch.allclose(batch.pixels[1], torch.full((64, 96, 3), 128 / 255.0))
    reasons = dict(batch.skipped)
    assert set(reasons) == {"b.jpg", "c.png", "gone.png"}
    assert "could not be read as an image" in reasons["b.jpg"]
    assert "c.png is 32x32 pixels; at least 64x64 are needed" in reasons["c.png"]
    assert "does not exist" in reasons["gone.png"]
    assert dict(batch.notes) == {"d.png": "grayscale"}
    with pytest.raises(ValueError, match=r"none of the 1 file\(s\) could be read as a photo: b.jpg: "):
        read_image_batch([tmp_path / "b.jpg"])


def test_save_png_round_trip_is_atomic(tmp_path):
    image = torch.rand(16, 24, 3)
    path = save_png(image, tmp_path / "x.png")
    back = torch.from_numpy(np.array(Image.open(path))).float() / 255
    assert back.shape == (16, 24, 3) and (back - image).abs().max() <= 0.5 / 255 + 1e-6
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]
    with pytest.raises(ValueError, match=r"one \[H, W, 3\] image, got shape \[1, 16, 24, 3\]"):
        save_png(image[None], tmp_path / "y.png")
    assert not (tmp_path / "y.png").exists()


def test_named_png_files():
    assert named_png_files(["p.jpg", "q.png"], 2, "_edit") == ["p_edit.png", "q_edit.png"]
    assert named_png_files(["p.jpg"], 3) == ["p_01.png", "p_02.png", "p_03.png"]
    assert named_png_files(["a.jpg", "a.png"], 2) == ["a_jpg.png", "a_png.png"]
    with pytest.raises(ValueError, match="4 images for 3 names"):
        named_png_files(["a", "b", "c"], 4)
    with pytest.raises(ValueError, match="must not contain"):
        named_png_files(["a"], 1, "/etc")
