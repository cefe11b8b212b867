"""Training building blocks: Ranger against the official optimiser, data folders and transforms, options, the
resume-state checks, metrics log and image grids (all fast, no real weights)."""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import pytest
import torch
from PIL import Image

from hyperstyle_core.train.data import (DomainTransform, EpochOrder, ImageFolderDataset, domain_transform,
                                        list_images, load_batch, validation_batches)
from hyperstyle_core.train.grids import grid_image
from hyperstyle_core.train.log import MetricsLog
from hyperstyle_core.train.models import parse_layers
from hyperstyle_core.train.optim import Ranger, make_optimizer
from hyperstyle_core.train.options import TrainOptions
from hyperstyle_core.train.state import _check_same_options

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


# ------------------------------------------------------------------------------------------------------ Ranger

def _ranger_params() -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(shape, generator=g)) for shape in ((4, 3, 3, 3), (5, 7), (6,))]


@pytest.mark.parametrize("case", ["default", "lr1e-2_wd"])
def test_ranger_equals_the_official_optimiser_over_14_steps(case):
    # Reference: the official training/ranger.py run on this problem (fixture official_train_step.json,
    # "ranger"): 14 steps cover the SGD-like warm-up, the rectified RAdam steps (from step 6) and two Lookahead
    # syncs (steps 6 and 12). Same float32 operations in the same order: equal to the last bit.
    ref = json.loads((FIXTURES / "official_train_step.json").read_text())["ranger"][case]
    params = _ranger_params()
    opt = Ranger(params, **ref["kwargs"])
    for step in range(14):
        for p in params:
            p.grad = torch.sin(3 * p.detach() + step) + 0.1 * p.detach()
        opt.step()
    for p, expected in zip(params, ref["params"]):
        assert torch.equal(p.detach().reshape(-1), torch.tensor(expected))


def test_ranger_state_dict_round_trip_continues_identically():
    a, b = _ranger_params(), _ranger_params()
    opt_a = Ranger(a, lr=1e-2)
    for step in range(8):
        for p in a:
            p.grad = torch.cos(p.detach() + step)
        opt_a.step()
    with torch.no_grad():
        for p, q in zip(a, b):
            q.copy_(p)
    opt_b = Ranger(b, lr=1e-2)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))    # as read from a file: no shared tensors
    for step in range(8, 14):
        for opt, ps in ((opt_a, a), (opt_b, b)):
            for p in ps:
                p.grad = torch.cos(p.detach() + step)
            opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_optimizer_choice_and_bad_values_are_refused():
    assert isinstance(make_optimizer(_ranger_params(), "adam", 1e-3), torch.optim.Adam)
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'; use one of ranger, adam"):
        make_optimizer(_ranger_params(), "sgd")
    with pytest.raises(ValueError, match="learning rate must be a finite number > 0, got nan"):
        make_optimizer(_ranger_params(), "ranger", float("nan"))


# -------------------------------------------------------------------------------------------------------- data

def _write(path: Path, size=(40, 30), color=(255, 0, 0)) -> Path:
    Image.new("RGB", size, color).save(path)
    return path


def test_official_transforms_per_domain():
    assert domain_transform("faces") == DomainTransform(256, 256, True)
    assert domain_transform("other") == DomainTransform(256, 256, True)
    assert domain_transform("cars") == DomainTransform(192, 256, True)
    with pytest.raises(ValueError, match="unknown domain 'dogs'; use one of faces, cars, other"):
        domain_transform("dogs")


def test_images_are_resized_normalised_and_flipped(tmp_path):
    img = Image.new("RGB", (64, 48))
    img.paste((255, 255, 255), (0, 0, 32, 48))         # left half white, right half black
    img.save(tmp_path / "a.png")
    data = ImageFolderDataset(list_images(tmp_path), domain_transform("cars"))
    plain, flipped = data[(0, False)], data[(0, True)]
    assert plain.shape == (3, 192, 256) and plain.dtype == torch.float32
    assert plain[:, :, 0].eq(1).all() and plain[:, :, -1].eq(-1).all()     # Normalize(0.5, 0.5): [-1, 1]
    assert torch.equal(flipped, plain.flip(-1))


def test_align_output_folder_gives_its_aligned_faces_only(tmp_path):
    for name in ("a_aligned.png", "a_inversion.png", "b_aligned.png", "b_pasted.png"):
        _write(tmp_path / name)
    (tmp_path / "a_alignment.json").write_text("{}")
    assert [p.name for p in list_images(tmp_path)] == ["a_aligned.png", "b_aligned.png"]


def test_bad_image_files_are_skipped_with_a_warning(tmp_path, caplog):
    _write(tmp_path / "good.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "notes.txt").write_text("ignored: not an image name")
    with caplog.at_level(logging.WARNING):
        assert [p.name for p in list_images(tmp_path)] == ["good.png"]
    assert "skipping" in caplog.text and "empty.png: empty file" in caplog.text and "text.jpg" in caplog.text


def test_a_file_damaged_after_listing_is_replaced_by_the_next_one(tmp_path, caplog):
    paths = [_write(tmp_path / "a.png", color=(0, 0, 0)), _write(tmp_path / "b.png", color=(255, 255, 255))]
    data = ImageFolderDataset(paths, DomainTransform(8, 8, False))
    paths[0].write_bytes(b"broken")
    with caplog.at_level(logging.WARNING):
        assert data[(0, False)].eq(1).all()            # b.png (white) stands in
    assert "skipping" in caplog.text and "a.png" in caplog.text


def test_folders_without_usable_images_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(tmp_path / "missing")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ValueError, match=r"no usable training images in .* \(1 files, no images\)"):
        list_images(tmp_path)
    (tmp_path / "y.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"\(1 image files, none readable\)"):
        list_images(tmp_path)


def test_epoch_order_is_seeded_drops_the_last_batch_and_resumes_mid_epoch():
    order = EpochOrder(7, 2, seed=3, flip=True)
    assert order.batches_per_epoch == 3
    first = order.epoch(0)
    assert first == EpochOrder(7, 2, seed=3, flip=True).epoch(0)          # deterministic
    assert first != order.epoch(1)                                         # reshuffled per epoch
    assert len({i for batch in first for i, _ in batch}) == 6              # 6 distinct images, one dropped
    stream = order.iterate(0, 0)
    full = [next(stream) for _ in range(5)]
    resumed = order.iterate(0, 2)
    assert [next(resumed) for _ in range(3)] == full[2:]
    assert full[3][:2] == (1, 0)                                           # epoch 1 starts after batch 2
    with pytest.raises(ValueError, match="3 training images are fewer than one batch of 4"):
        EpochOrder(3, 4, 0, True)


def test_test_batches_are_in_order_without_flips():
    assert validation_batches(5, 2) == [[(0, False), (1, False)], [(2, False), (3, False)]]
    assert validation_batches(3, 8) == [[(0, False), (1, False), (2, False)]]
    assert validation_batches(9, 2, max_batches=1) == [[(0, False), (1, False)]]


def test_load_batch_stacks(tmp_path):
    paths = [_write(tmp_path / f"{i}.png") for i in range(3)]
    batch = load_batch(ImageFolderDataset(paths, DomainTransform(16, 16)), [(2, True), (0, False)])
    assert batch.shape == (2, 3, 16, 16)


# ------------------------------------------------------------------------------------------ options and state

def test_options_have_the_official_defaults_and_refuse_bad_values():
    o = TrainOptions()
    assert (o.batch_size, o.n_iters, o.lr, o.optimizer, o.l2, o.lpips, o.id_weight, o.moco_weight) == \
        (8, 5, 1e-4, "ranger", 1.0, 0.8, 0.1, 0.0)
    assert (TrainOptions(domain="cars").id_weight, TrainOptions(domain="cars").moco_weight) == (0.0, 0.5)
    with pytest.raises(ValueError, match="batch-size must be a positive integer, got 0"):
        TrainOptions(batch_size=0)
    with pytest.raises(ValueError, match="n-iters must be a positive integer, got True"):
        TrainOptions(n_iters=True)
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        TrainOptions(optimizer="sgd")


def test_layers_option():
    assert parse_layers("0, 2,3") == (0, 2, 3)
    assert parse_layers(None)[:3] == (0, 2, 3)
    with pytest.raises(ValueError, match="comma-separated generator layer indices"):
        parse_layers("0;2")
    with pytest.raises(ValueError, match="distinct indices >= 0"):
        parse_layers("1,1")


def test_resume_refuses_other_options_but_accepts_a_longer_schedule(tmp_path):
    saved = {**TrainOptions().to_dict(), "train_images": 10}
    _check_same_options(saved, {**saved, "steps": 10**6, "val_every": 7}, tmp_path / "s.pt")
    with pytest.raises(ValueError, match=r"other options \(batch_size: saved 8, now 4\); resume with the same"):
        _check_same_options(saved, {**saved, "batch_size": 4}, tmp_path / "s.pt")


def test_metrics_log_drops_records_after_the_resumed_step(tmp_path):
    log = MetricsLog(tmp_path, tensorboard=False)
    for step in (1, 2, 3):
        log.write(step, "train", {"loss": step / 10, "bad": float("nan")})
    log.truncate_after(2)
    records = log.read()
    assert [r["step"] for r in records] == [1, 2] and records[0]["bad"] == "nan"


def test_grid_columns_are_input_w_inversion_and_every_iteration():
    x = torch.full((3, 3, 8, 12), -1.0)
    grid = grid_image(x, x * 0, [x * -1, x * -1, x * -1])
    assert grid.size == (12 * 5, 8 * 2)                 # 5 columns, 2 rows (official display_count)
    assert grid.getpixel((0, 0)) == (0, 0, 0) and grid.getpixel((12 * 4, 0)) == (255, 255, 255)
    with pytest.raises(ValueError, match=r"grid column 2 has shape \[3, 4, 4\]"):
        grid_image(x, x, [torch.zeros(3, 3, 4, 4)])
