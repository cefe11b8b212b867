"""Load Image Folder and Save Images Named with ComfyUI absent: sizes, names, bad files, cap/skip, errors."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture()
def comfy_dirs(tmp_path, monkeypatch):
    """ComfyUI's input and output folders, as the pack's stand-ins find them (these nodes need no models)."""
    monkeypatch.setenv("HYPERSTYLE_INPUT_DIR", str(tmp_path / "input"))
    monkeypatch.setenv("HYPERSTYLE_OUTPUT_DIR", str(tmp_path / "output"))
    (tmp_path / "input").mkdir()
    return tmp_path


@pytest.fixture()
def nodes(pack, comfy_dirs):
    return pack.NODE_CLASS_MAPPINGS


def _folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (100, 80), (200, 10, 10)).save(folder / "a.jpg", quality=95)
    rgba = Image.new("RGBA", (80, 100), (10, 200, 10, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba.save(folder / "b.png")
    Image.new("L", (120, 120), 128).save(folder / "c.png")
    (folder / "d.jpg").write_text("not a picture")
    Image.new("RGB", (10, 10)).save(folder / "e.png")     # too small
    (folder / "notes.txt").write_text("x")
    (folder / "sub").mkdir()
    return folder


def test_metadata(nodes, pack):
    for node_id in ("HyperStyleLoadImageFolder", "HyperStyleSaveImagesNamed"):
        cls = nodes[node_id]
        assert cls.CATEGORY == "HyperStyle/batch" and cls.FUNCTION == "execute" and cls.DESCRIPTION
        assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)
        assert all(spec[1].get("tooltip") for spec in cls.INPUT_TYPES()["required"].values())
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["HyperStyleLoadImageFolder"] == "HyperStyle Load Image Folder (batch)"
    assert nodes["HyperStyleSaveImagesNamed"].OUTPUT_NODE
    assert nodes["HyperStyleSaveImagesNamed"].INPUT_TYPES()["required"]["names"][1]["forceInput"]


def test_load_folder_fits_sizes_and_names_the_images(nodes, tmp_path, caplog):
    folder = _folder(tmp_path)
    images, names = nodes["HyperStyleLoadImageFolder"]().execute(str(folder), "*.jpg;*.PNG")
    assert names.splitlines() == ["a.jpg", "b.png", "c.png"]     # d.jpg unreadable, e.png too small: left out
    assert images.shape == (3, 80, 100, 3) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1
    assert "leaving out d.jpg" in caplog.text and "leaving out e.png" in caplog.text
    # pad: the square grey c.png keeps its aspect (80x80 in the middle) with black borders left and right
    assert images[2, :, :10].max() == 0 and abs(images[2, 40, 50, 0].item() - 128 / 255) < 0.01
    # b.png (portrait, RGBA): alpha composited over white, then letterboxed
    assert images[1, 40, 50, 1] > 0.7 and images[1, 40, 0].max() == 0
    crop, _ = nodes["HyperStyleLoadImageFolder"]().execute(str(folder), "c.png;a.jpg", fit="crop")
    assert crop.shape == (2, 80, 100, 3) and abs(crop[1, :, :10].mean().item() - 128 / 255) < 0.01
    stretch, _ = nodes["HyperStyleLoadImageFolder"]().execute(str(folder), "*.png", fit="stretch")
    assert stretch.shape == (2, 100, 80, 3)     # the first match, b.png, sets the size
    sliced, names = nodes["HyperStyleLoadImageFolder"]().execute(str(folder), "*.jpg;*.png", cap=1, skip=1)
    assert names == "b.png" and sliced.shape == (1, 100, 80, 3)


def test_empty_directory_means_comfyui_input_folder(nodes, comfy_dirs):
    inputs = comfy_dirs / "input"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(inputs / "x.png")
    (inputs / "more").mkdir()
    Image.new("RGB", (70, 64)).save(inputs / "more" / "y.jpg")
    cls = nodes["HyperStyleLoadImageFolder"]
    assert cls().execute("")[1] == "x.png"
    assert cls().execute("more")[1] == "y.jpg"         # relative: inside the input folder
    assert cls.VALIDATE_INPUTS("") is True
    assert "does not exist" in cls.VALIDATE_INPUTS("missing")
    with pytest.raises(FileNotFoundError, match=r"folder .*missing does not exist\. Leave directory empty"):
        cls().execute("missing")
    with pytest.raises(ValueError, match=r"no file in .* matches '\*\.webp'"):
        cls().execute("", "*.webp")
    (inputs / "bad.png").write_bytes(b"junk")
    with pytest.raises(ValueError,
                       match=r"in .*input, none of the 1 file\(s\) could be read as a photo: bad.png: .*use a JPEG"):
        cls().execute("", "bad.png")
    before = cls.IS_CHANGED("")
    assert cls.IS_CHANGED("") == before
    Image.new("RGB", (64, 64)).save(inputs / "z.png")
    assert cls.IS_CHANGED("") != before


def test_load_folder_stops_when_cancelled(nodes, tmp_path, monkeypatch, pack):
    from hyperstyle_pack.nodes import _comfy
    folder = _folder(tmp_path)
    calls = []

    class Interrupted(Exception):
        pass

    def interrupt():
        calls.append(1)
        if len(calls) >= 2:
            raise Interrupted()
    monkeypatch.setattr(_comfy, "check_interrupt", interrupt)
    with pytest.raises(Interrupted):
        nodes["HyperStyleLoadImageFolder"]().execute(str(folder), "*")
    assert len(calls) == 2


def test_save_keeps_the_names(nodes, comfy_dirs):
    images = torch.rand(3, 16, 20, 3)
    original = images.clone()
    out = nodes["HyperStyleSaveImagesNamed"]().execute(images, "a.jpg\na.png\nsub/b.jpg\n", "batch", "_edit")
    saved = comfy_dirs / "output" / "batch"
    assert sorted(p.name for p in saved.iterdir()) == ["a_jpg_edit.png", "a_png_edit.png", "b_edit.png"]
    assert out["result"][0].splitlines() == [str(saved / n) for n in ("a_jpg_edit.png", "a_png_edit.png",
                                                                        "b_edit.png")]
    assert out["ui"]["images"][2] == {"filename": "b_edit.png", "subfolder": "batch", "type": "output"}
    back = np.asarray(Image.open(saved / "b_edit.png"), dtype=np.float32) / 255
    assert np.abs(back - images[2].numpy()).max() <= 0.5 / 255 + 1e-6
    assert torch.equal(images, original)     # input untouched
    # Again with new pixels: replaced in place, still no temp files; k images per name get _01.._k.
    nodes["HyperStyleSaveImagesNamed"]().execute(torch.zeros(6, 16, 20, 3), "a.jpg\nb.jpg", "batch")
    assert {p.name for p in saved.iterdir()} >= {"a_01.png", "a_03.png", "b_01.png", "b_03.png"}
    assert not [p for p in saved.iterdir() if p.name.endswith(".partial")]


def test_save_errors(nodes):
    save = nodes["HyperStyleSaveImagesNamed"]()
    with pytest.raises(ValueError, match="Named: 4 images for 3 names; give one image per name"):
        save.execute(torch.rand(4, 8, 8, 3), "a\nb\nc")
    with pytest.raises(ValueError, match="names is empty"):
        save.execute(torch.rand(1, 8, 8, 3), "\n")
    with pytest.raises(ValueError, match="must be a relative folder inside ComfyUI's output folder"):
        save.execute(torch.rand(1, 8, 8, 3), "a.jpg", "../escape")
    with pytest.raises(ValueError, match="must not contain"):
        save.execute(torch.rand(1, 8, 8, 3), "a.jpg", "x", "/etc")


def test_load_folder_leaves_out_link_loops_and_names_that_are_not_text(nodes, tmp_path, caplog):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (100, 80), (200, 10, 10)).save(folder / "a.jpg")
    (folder / "loop.png").symlink_to("loop.png")
    Image.new("RGB", (100, 80)).save(folder / "two\nlines.png")     # would become two names in the names output
    (folder / "\x1b[31mred.png").write_bytes(b"junk")     # an escape sequence must not reach the log raw
    undecodable = sys.platform.startswith("linux")     # other systems refuse such names
    if undecodable:
        Image.new("RGB", (100, 80)).save(folder / os.fsdecode(b"bad\xff.png"))
    cls = nodes["HyperStyleLoadImageFolder"]
    images, names = cls().execute(str(folder), "*.jpg;*.png")
    assert names.splitlines() == ["a.jpg"] + (["bad\\xff.png"] if undecodable else [])
    assert images.shape == (2 if undecodable else 1, 80, 100, 3)
    assert "leaving out loop.png: loop.png could not be read (Too many levels of symbolic links)" in caplog.text
    assert "leaving out \\x1b[31mred.png" in caplog.text and "\x1b" not in caplog.text
    assert "leaving out two\\nlines.png: its name has a line break; rename the file" in caplog.text
    changed = cls.IS_CHANGED(str(folder), "*.jpg;*.png")
    assert isinstance(changed, str) and changed == cls.IS_CHANGED(str(folder), "*.jpg;*.png")


def test_load_folder_refuses_a_selection_above_the_batch_limit(nodes, tmp_path, monkeypatch):
    from hyperstyle_pack.nodes import folder as folder_nodes
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (100, 100)).save(folder / f"p{i}.png")
    monkeypatch.setattr(folder_nodes, "MAX_BATCH_PIXELS", 25_000)     # the limit, made small
    with pytest.raises(ValueError, match=r"Load Image Folder: in .*photos, p2.png would make the batch 3 photos of "
                                         r"100x100 .*load at most 2 files at a time \(cap 2, then skip 2, 4, ...\)"):
        nodes["HyperStyleLoadImageFolder"]().execute(str(folder), "*.png")
    assert nodes["HyperStyleLoadImageFolder"]().execute(str(folder), "*.png", cap=2)[0].shape[0] == 2
