"""End to end on CPU: a tiny generator renders the train and test images, the tiny hypernetwork learns to invert
them (random LPIPS networks), a killed-and-resumed run continues the same loss curve, and the trained file loads and
runs through `hyperstyle invert`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hyperstyle_core.cli import main as cli_main
from hyperstyle_core.inversion import invert
from hyperstyle_core.io.checkpoints import load, save_model
from hyperstyle_core.io.formats import read_safetensors_metadata
from hyperstyle_core.io.images import tensor_to_pil
from hyperstyle_core.nn.loss_networks import AlexNetFeatures, LPIPSLinear
from hyperstyle_core.testing import make_tiny_models
from hyperstyle_core.train.coach import Trainer
from hyperstyle_core.train.data import ImageFolderDataset, domain_transform, list_images
from hyperstyle_core.train.losses import HyperStyleLoss, LossWeights, LPIPSLoss
from hyperstyle_core.train.options import TrainOptions
from hyperstyle_core.train.state import BEST_FILE, LATEST_FILE, STATE_FILE

pytestmark = pytest.mark.slow      # a whole (tiny) training run: a minute

STEPS = 8
OPTIONS = TrainOptions(steps=STEPS, batch_size=2, test_batch_size=2, n_iters=2, lr=5e-3, optimizer="adam", id=0.0,
                       val_every=STEPS, save_every=STEPS // 2, image_every=STEPS // 2, log_every=1,
                       max_val_batches=None)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """6 train and 2 test images rendered by the tiny generator (64x64 PNG) around its latent_avg."""
    root = tmp_path_factory.mktemp("train_data")
    hs, _ = make_tiny_models(0)
    gen = torch.Generator().manual_seed(1)
    for split, n in (("train", 6), ("test", 2)):
        (root / split).mkdir()
        w = hs.latent_avg[0] + 0.5 * torch.randn(n, hs.latent_avg.shape[1], generator=gen)
        with torch.no_grad():
            images = hs.decoder(w, None)
        for i in range(n):
            tensor_to_pil(images[i]).save(root / split / f"{i:02d}.png")
    return root


def _trainer(data: Path, out: Path, resume: bool = False) -> Trainer:
    torch.manual_seed(0)        # make_tiny_models leaves 1-D parameters (conv biases) to the global RNG
    hs, we = make_tiny_models(0)
    torch.manual_seed(1)        # the random LPIPS networks
    loss = HyperStyleLoss(LossWeights(l2=1.0, lpips=0.8, id=0.0), LPIPSLoss(AlexNetFeatures(), LPIPSLinear()))
    faces = domain_transform("faces")
    train = ImageFolderDataset(list_images(data / "train"), faces)
    test = ImageFolderDataset(list_images(data / "test"), type(faces)(faces.height, faces.width, flip=False))
    return Trainer(OPTIONS, hs, we, loss, train, test, out, torch.device("cpu"), resume=resume, progress=False,
                   tensorboard=False)


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory) -> dict:
    """One uninterrupted run (validated before training too) and one stopped at STEPS/2 then resumed."""
    full_dir, split_dir = tmp_path_factory.mktemp("full"), tmp_path_factory.mktemp("split")
    full = _trainer(data, full_dir)
    before = full.validate(write=False)
    full.run()
    after = full.validate(write=False)
    _trainer(data, split_dir).run(until=STEPS // 2)        # "killed" right after its save at STEPS/2
    _trainer(data, split_dir, resume=True).run()
    return {"before": before, "after": after, "full": full_dir, "split": split_dir}


def test_held_out_l2_drops_and_later_iterations_are_better(runs):
    before, after = runs["before"], runs["after"]
    assert after["loss_l2"] < 0.9 * before["loss_l2"]           # observed 0.0091 -> 0.0074
    assert after["loss_l2_iter2"] < after["loss_l2_iter1"]        # observed 0.0074 < 0.0082


def test_killed_and_resumed_run_continues_the_same_loss_curve(runs):
    def curve(folder: Path) -> list[dict]:
        return [json.loads(line) for line in (folder / "logs" / "metrics.jsonl").read_text().splitlines()]
    full, split = curve(runs["full"]), curve(runs["split"])
    assert [r["step"] for r in full if r["split"] == "train"] == list(range(1, STEPS + 1))
    assert split == full                                   # every step's losses, equal to the last bit
    a = load(runs["full"] / LATEST_FILE)
    b = load(runs["split"] / LATEST_FILE)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_run_folder_holds_models_state_and_grids(runs):
    out = runs["full"]
    for name in (LATEST_FILE, BEST_FILE, STATE_FILE, f"images/train/{STEPS:07d}.png",
                 f"images/test/{STEPS:07d}.png"):
        assert (out / name).is_file(), name
    opts = json.loads(_opts(out / LATEST_FILE))
    assert opts["global_step"] == STEPS and opts["optimizer"] == "adam"


def _opts(path: Path) -> str:
    return read_safetensors_metadata(path)["opts"]


def test_a_folder_with_a_run_is_not_overwritten(runs, data):
    with pytest.raises(ValueError, match="already holds a training run .* continue it with --resume"):
        _trainer(data, runs["full"])


def test_trained_file_loads_and_runs_through_invert(runs, data, tmp_path):
    model = load(runs["full"] / BEST_FILE)
    _, we = make_tiny_models(0)
    images = torch.rand(1, 3, 256, 256) * 2 - 1
    assert invert(images, model, we, n_iters=2).final.shape == (1, 3, 64, 64)
    we_file = save_model(we, tmp_path / "we.safetensors")
    rc = cli_main(["invert", str(data / "test" / "00.png"), "--hyperstyle", str(runs["full"] / LATEST_FILE),
                   "--w-encoder", str(we_file), "--out", str(tmp_path / "out"), "--iterations", "2",
                   "--device", "cpu"])
    assert rc == 0 and any((tmp_path / "out").iterdir())


def test_cli_trains_new_model_and_refuses_missing_loss_networks(data, tmp_path, capsys):
    hs, we = make_tiny_models(0)
    generator = hs.decoder
    generator.latent_avg = hs.latent_avg[0]
    gen_file = save_model(generator, tmp_path / "gen.safetensors")
    we_file = save_model(we, tmp_path / "we.safetensors")
    common = ["train", "--train", str(data / "train"), "--test", str(data / "test"), "--generator", str(gen_file),
              "--w-encoder", str(we_file), "--device", "cpu", "--quiet", "--batch-size", "2", "--iters", "2",
              "--models", str(tmp_path / "no_models")]
    assert cli_main(common + ["--out", str(tmp_path / "a"), "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "hyperstyle download alexnet lpips_alex model_ir_se50" in err and "--lpips_lambda 0" in err
    common += ["--id", "0"]
    args = common + ["--out", str(tmp_path / "run"), "--steps", "2", "--lpips", "0", "--val-every", "2",
                     "--layers", "0,3"]
    assert cli_main(args) == 0
    model = load(tmp_path / "run" / LATEST_FILE, expect="hyperstyle")
    assert model.config.layers_to_tune == (0, 3)
    assert cli_main(args[:-8] + ["--steps", "3", "--lpips", "0", "--val-every", "2", "--layers", "0,3"]) == 0
    assert "continuing the run" in capsys.readouterr().out
    assert json.loads(_opts(tmp_path / "run" / LATEST_FILE))["global_step"] == 3
