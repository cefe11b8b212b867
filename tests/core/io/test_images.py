"""Reading folders of photos as one batch, fitting sizes, saving PNGs under input names."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hyperstyle_core.io.images import ImageReadError, fit_to_size, read_image_batch, read_rgb, save_png
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


def test_read_image_batch_takes_memory_only_for_what_it_read(tmp_path, monkeypatch):
    # One photo and many files that are not: the batch must not be sized by the file count (12 MP + 299 junk
    # files once asked for 43 GB before reading anything).
    paths = [_photo(tmp_path / "a.png", (300, 200))]
    for i in range(40):
        paths.append(tmp_path / f"junk_{i:02d}.jpg")
        paths[-1].write_bytes(b"not a picture")
    requested = []
    real_empty = torch.empty

    def spy(*size, **kwargs):
        t = real_empty(*size, **kwargs)
        requested.append(t.numel())
        return t
    monkeypatch.setattr(torch, "empty", spy)
    batch = read_image_batch(paths)
    assert batch.names == ["a.png"] and batch.pixels.shape == (1, 200, 300, 3) and len(batch.skipped) == 40
    assert max(requested) == 200 * 300 * 3


def test_read_image_batch_refuses_more_than_max_total_pixels(tmp_path):
    paths = [_photo(tmp_path / f"p{i}.png", (100, 100)) for i in range(5)]
    ticks = []
    with pytest.raises(ValueError, match=r"p2.png would make the batch 3 photos of 100x100 = 0 megapixels, above the "
                                         r"limit of 0 megapixels for one batch .*; load at most 2 files at a time "
                                         r"\(cap 2, then skip 2, 4, ...\)"):
        read_image_batch(paths, max_total_pixels=25_000, on_file=lambda: ticks.append(1))
    assert len(ticks) == 2     # stopped at the photo that did not fit, before reading the rest
    assert read_image_batch(paths[:2], max_total_pixels=25_000).pixels.shape == (2, 100, 100, 3)
    with pytest.raises(ValueError, match=r"p0.png is 100x100 = 0 megapixels, above the limit .* downscale it"):
        read_image_batch(paths, max_total_pixels=5_000)
    with pytest.raises(ValueError, match="max_total_pixels must be a positive integer or None, got 0"):
        read_image_batch(paths, max_total_pixels=0)
    assert read_image_batch(paths, max_total_pixels=None).pixels.shape[0] == 5


def test_read_rgb_refuses_non_finite_float_pixels_and_reports_link_loops(tmp_path):
    arr = np.linspace(0, 1, 96 * 96, dtype=np.float32).reshape(96, 96)
    Image.fromarray(arr).save(tmp_path / "fine.tif")
    assert read_rgb(tmp_path / "fine.tif")[1] == ["float grayscale scaled to 8-bit"]
    for bad in (float("nan"), float("inf"), -float("inf")):
        arr[5, 5] = bad
        Image.fromarray(arr).save(tmp_path / "bad.tif")
        with pytest.raises(ImageReadError, match="bad.tif holds NaN or infinite pixel values") as info:
            read_rgb(tmp_path / "bad.tif")
        assert info.value.code == "non_finite"
    (tmp_path / "loop.png").symlink_to("loop.png")
    with pytest.raises(ImageReadError, match=r"loop.png could not be read \(Too many levels of symbolic links\)"):
        read_rgb(tmp_path / "loop.png")
    with pytest.raises(FileNotFoundError, match=r"gone.png does not exist \(broken link\)"):
        (tmp_path / "gone.png").symlink_to("nothing.png")
        read_rgb(tmp_path / "gone.png")
