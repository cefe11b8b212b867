"""HyperStyle Compare: two IMAGE batches -> the numbers `hyperstyle evaluate` gives for the same pictures saved as
files (the official evaluation's metrics), a report and one FLOAT per metric; missing network files refused with the
command that gets them."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from hyperstyle_core import convert
from hyperstyle_core.metrics import evaluate_folders
from hyperstyle_core.nn.loss_networks import IRSE50, AlexNetFeatures, LPIPSLinear

NETWORK_FILES = {"lpips_network": "alexnet.safetensors", "lpips_layers": "lpips_alex.safetensors",
                 "id_network": "model_ir_se50.safetensors"}


@pytest.fixture(scope="module")
def metric_models(tmp_path_factory):
    """A model folder with randomly initialised metric networks as `hyperstyle download` leaves them: official keys,
    converted, under the download names (parity with the official code is tested on recipe weights in
    tests/core/metrics/test_metrics.py)."""
    src, folder = tmp_path_factory.mktemp("metric_sources"), tmp_path_factory.mktemp("metric_models")
    torch.manual_seed(0)
    networks = {"lpips_network": AlexNetFeatures(), "lpips_layers": LPIPSLinear(), "id_network": IRSE50()}
    for input_name, network in networks.items():
        torch.save(network.state_dict(), src / "weights.pth")
        convert(src / "weights.pth", src).rename(folder / NETWORK_FILES[input_name])
    return folder


@pytest.fixture()
def node(pack, metric_models, monkeypatch):
    monkeypatch.setenv("HYPERSTYLE_MODEL_DIRS", str(metric_models))
    monkeypatch.setenv("HYPERSTYLE_DEVICE", "cpu")
    return pack.NODE_CLASS_MAPPINGS["HyperStyleCompare"]


def _pictures(folder, sides, seed, noise=0.0) -> torch.Tensor:
    """Saves one PNG per side (smooth random pictures, plus pixel noise) and returns them as ComfyUI's LoadImage
    would: [B, H, W, 3] in [0, 1]. The same seed gives the same pictures (before the noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng, noise_rng = np.random.default_rng(seed), np.random.default_rng(99)
    rows = []
    for i, side in enumerate(sides):
        smooth = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((side, side))
        noisy = np.asarray(smooth, np.float64) + noise_rng.normal(0, noise, (side, side, 3))
        arr = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i}.png")
        rows.append(torch.from_numpy(arr.astype(np.float32) / 255))
    return torch.stack(rows)


def test_registered_with_its_search_words(pack):
    cls = pack.NODE_CLASS_MAPPINGS["HyperStyleCompare"]
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["HyperStyleCompare"] == "HyperStyle Compare (metrics: LPIPS, ID, MS-SSIM)"
    assert cls.CATEGORY == "HyperStyle/metrics" and cls.FUNCTION == "execute" and cls.DESCRIPTION
    assert cls.RETURN_TYPES == ("STRING", "FLOAT", "FLOAT", "FLOAT", "FLOAT")
    assert cls.RETURN_NAMES == ("report", "l2", "lpips", "id", "ms_ssim")
    assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)


def test_pickers_list_the_metric_networks(node):
    required = node.INPUT_TYPES()["required"]
    for input_name, name in NETWORK_FILES.items():
        files, options = required[input_name]
        assert files == [name] and options["default"] == name and options["tooltip"]


def test_scores_equal_hyperstyle_evaluate_on_the_saved_files(node, metric_models, tmp_path):
    images = _pictures(tmp_path / "pred", [96, 96], seed=1)       # other size than the references
    reference = _pictures(tmp_path / "gt", [64, 64], seed=1, noise=20)
    before = (images.clone(), reference.clone())
    report, l2, lpips, identity, ms_ssim = node().execute(images, reference, True, True, *NETWORK_FILES.values())
    expected = evaluate_folders(tmp_path / "pred", tmp_path / "gt", metric_models).summary
    assert (l2, lpips, identity, ms_ssim) == pytest.approx(
        (expected["l2"].mean, expected["lpips"].mean, expected["id"].mean, expected["ms_ssim"].mean), abs=1e-6)
    assert report.splitlines()[0].startswith("image 1: l2 ") and "mean +- std:" in report
    assert f"l2: {expected['l2'].mean:.5f}+-{expected['l2'].std:.5f} (n=2)" in report
    assert torch.equal(images, before[0]) and torch.equal(reference, before[1])       # inputs untouched


def test_one_reference_serves_every_image_and_other_counts_are_refused(node, tmp_path):
    images = _pictures(tmp_path / "a", [64, 64, 64], seed=3, noise=40)
    one = images[:1]
    report, l2, lpips, identity, ms_ssim = node().execute(images, one, False, False)
    assert report.splitlines()[0].startswith("image 1: l2 0.00000, ms_ssim 1.00000")
    assert math.isnan(lpips) and math.isnan(identity) and l2 > 0 and 0 < ms_ssim < 1
    with pytest.raises(ValueError, match=r"^HyperStyle Compare: got 3 images but 2 reference images; give one "
                                         r"reference per image \(in the same order\) or a single reference for all$"):
        node().execute(images, images[:2], False, False)


def test_missing_networks_name_the_download_command(node, pack, monkeypatch, tmp_path):
    assert node.VALIDATE_INPUTS(False, False, None, None, None) is True
    assert node.VALIDATE_INPUTS(True, True, *NETWORK_FILES.values()) is True
    message = node.VALIDATE_INPUTS(True, False, None, None, None)
    assert message == ("HyperStyle Compare: the lpips metric needs the perceptual-loss network (LPIPS AlexNet) "
                       "(alexnet.safetensors) and none is picked; get it with `hyperstyle download alexnet --models "
                       "ComfyUI/models/hyperstyle`, refresh the page and pick it, or set use_lpips to false")
    assert "../x.safetensors" in node.VALIDATE_INPUTS(False, True, None, None, "../x.safetensors")
    monkeypatch.setenv("HYPERSTYLE_MODEL_DIRS", str(tmp_path))      # an empty model folder
    images = torch.rand(1, 64, 64, 3)
    with pytest.raises(FileNotFoundError, match=r"^HyperStyle Compare: Model file 'model_ir_se50.safetensors' was "
                                                r"not found .* `hyperstyle download model_ir_se50 --models "
                                                r"ComfyUI/models/hyperstyle`, refresh the page and pick it, or set "
                                                r"use_id to false$"):
        node().execute(images, images, False, True, None, None, "model_ir_se50.safetensors")
