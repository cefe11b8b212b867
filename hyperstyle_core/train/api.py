"""The library entry point of training: files and folders in, a run folder out (what `hyperstyle train` calls).

    from hyperstyle_core.train.api import TrainOptions, train
    train("data/train", "data/test", w_encoder="models/faces_w_encoder.safetensors",
          generator="models/stylegan2-ffhq-config-f.safetensors", out="runs/ffhq", options=TrainOptions(steps=1000))
"""
from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import torch

from ..devices import resolve_device
from ..io.checkpoints import load
from .coach import Trainer
from .data import ImageFolderDataset, domain_transform, list_images
from .losses import LossWeights, load_losses
from .models import check_same_resolution, fine_tune_model, load_w_encoder, new_model, parse_layers
from .options import TrainOptions
from .state import RunPosition, STATE_FILE

log = logging.getLogger(__name__)


def build_trainer(train_dir: str | os.PathLike, test_dir: str | os.PathLike, w_encoder: str | os.PathLike,
                  out: str | os.PathLike, options: TrainOptions, generator: str | os.PathLike | None = None,
                  from_model: str | os.PathLike | None = None, models_dir: str | os.PathLike = "models",
                  backbone: str | os.PathLike | None = None, device: str | torch.device | None = "auto",
                  progress: bool = True) -> Trainer:
    """A Trainer for a new model (`generator`) or a fine-tuned one (`from_model`), continuing the run in `out` when
    it holds one (same options required).

    Raises:
        ValueError / FileNotFoundError: bad folders or files, missing loss networks (with the download command).
    """
    device = resolve_device(device)
    weights = LossWeights(options.l2, options.lpips, options.id_weight, options.moco_weight)
    # Cheap checks first: the data and the loss networks are refused before any model is read.
    transform = domain_transform(options.domain)
    train_set = ImageFolderDataset(list_images(train_dir), transform)
    test_set = ImageFolderDataset(list_images(test_dir), replace(transform, flip=False))
    loss_fn = load_losses(weights, models_dir, cars=options.domain == "cars", device=device)
    if generator is None and from_model is None:
        raise ValueError("give the generator to train for (--generator FILE), or a HyperStyle model to fine-tune "
                         "(--from FILE)")
    gen = load(generator, device="cpu", expect="stylegan2") if generator else None
    encoder = load_w_encoder(w_encoder, device)
    layers = parse_layers(options.layers) if options.layers else None
    if from_model:
        model = fine_tune_model(from_model, gen, options.domain, layers)
    else:
        model = new_model(gen, options.domain, layers or parse_layers(None), options.seed, backbone)
    check_same_resolution(encoder, model.decoder)
    resume = (Path(out) / STATE_FILE).exists()
    if resume:
        log.info("continuing the run in %s (%s found)", out, STATE_FILE)
    return Trainer(options, model, encoder, loss_fn, train_set, test_set, out, device, resume=resume,
                   progress=progress)


def train(train_dir: str | os.PathLike, test_dir: str | os.PathLike, w_encoder: str | os.PathLike,
          out: str | os.PathLike, options: TrainOptions = TrainOptions(), **kwargs) -> RunPosition:
    """Build the trainer (see `build_trainer` for the arguments) and run it to `options.steps`."""
    return build_trainer(train_dir, test_dir, w_encoder, out, options, **kwargs).run()
