"""The training loop (training/coach_hyperstyle.py:Coach.train): one optimiser step per batch, validation with the
best model kept, `latest` + resume state saved periodically, metrics and image grids logged.

    trainer = Trainer(options, model, w_encoder, loss_fn, train_set, test_set, out_dir, device)
    trainer.run()                       # or run(until=N) to stop early; Trainer(..., resume=True) continues exactly

Differences from the official coach, on purpose: the data order and flips come from a seeded generator (exact
resume); the step-0 validation is a full one (the official one looks at 5 batches and is not logged).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from tqdm import tqdm

from ..nn.engine.layout import set_conv_weight_layout
from ..nn.networks import HyperStyleModel, WEncoderModel
from .data import EpochOrder, ImageFolderDataset, load_batch, validation_batches
from .grids import save_grid
from .log import MetricsLog
from .losses import HyperStyleLoss
from .optim import make_optimizer
from .options import TrainOptions
from .state import BEST_FILE, LATEST_FILE, STATE_FILE, RunPosition, load_state, save_hyperstyle, save_state
from .step import ForwardResult, run_iterations, train_step

log = logging.getLogger(__name__)


class Trainer:
    """Owns a run's models, optimiser, data order and output folder (`out`)."""

    def __init__(self, options: TrainOptions, model: HyperStyleModel, w_encoder: WEncoderModel,
                 loss_fn: HyperStyleLoss, train_set: ImageFolderDataset, test_set: ImageFolderDataset,
                 out: str | os.PathLike, device: torch.device, resume: bool = False, progress: bool = True,
                 tensorboard: bool = True):
        if options.amp and device.type != "cuda":
            raise ValueError(f"mixed precision (--amp) needs a CUDA GPU; the device is {device.type}. Leave --amp "
                             f"out on CPU and MPS")
        self.options, self.device, self.progress = options, device, progress
        self.out = Path(out)
        self.model, self.w_encoder, self.loss_fn = _prepare(model, w_encoder, loss_fn, options, device)
        self.train_set, self.test_set = train_set, test_set
        params = list(self.model.hypernet.parameters())
        if options.train_decoder:
            params += list(self.model.decoder.parameters())
        self.optimizer = make_optimizer(params, options.optimizer, options.lr)
        self.scaler = torch.amp.GradScaler("cuda") if options.amp else None
        self.order = EpochOrder(len(train_set), options.batch_size, options.seed, train_set.transform.flip)
        self.log = MetricsLog(self.out / "logs", tensorboard)
        self.position = self._start(resume)

    @property
    def state_path(self) -> Path:
        return self.out / STATE_FILE

    def _start(self, resume: bool) -> RunPosition:
        if resume:
            position = load_state(self.state_path, self.model, self.optimizer, self._checked_options(), self.scaler)
            self.log.truncate_after(position.step)
            log.info("resuming at step %d (epoch %d, batch %d)", position.step, position.epoch, position.batch)
            return position
        if self.state_path.exists():
            raise ValueError(f"{self.out} already holds a training run ({STATE_FILE}); continue it with --resume or "
                             f"choose another --out folder")
        return RunPosition()

    def _checked_options(self) -> dict:
        # What must be equal for a resumed run to continue the same curve: the options and the data.
        return {**self.options.to_dict(), "train_images": len(self.train_set), "test_images": len(self.test_set)}

    # ----------------------------------------------------------------------------------------------- the loop
    def run(self, until: int | None = None) -> RunPosition:
        """Train up to `options.steps` optimiser steps (or stop after step `until`, e.g. to test resuming)."""
        opts = self.options
        last = opts.steps if until is None else min(until, opts.steps)
        pos = self.position
        batches = self.order.iterate(pos.epoch, pos.batch)
        bar = tqdm(total=opts.steps, initial=pos.step, unit="step", disable=not self.progress, dynamic_ncols=True)
        try:
            while pos.step < last:
                epoch, batch, items = next(batches)
                x = load_batch(self.train_set, items).to(self.device)
                self.model.hypernet.train()
                result = train_step(self.model, self.w_encoder, self.loss_fn, self.optimizer, x, x, opts.n_iters,
                                    self.scaler)
                pos.step += 1
                pos.epoch, pos.batch = (epoch, batch + 1) if batch + 1 < self.order.batches_per_epoch \
                    else (epoch + 1, 0)
                self._after_step(x, result)
                bar.update(1)
                bar.set_postfix(loss=f"{result.metrics[-1]['loss']:.4f}")
        finally:
            bar.close()
        return pos

    def _after_step(self, x: torch.Tensor, result: ForwardResult) -> None:
        opts, pos = self.options, self.position
        if pos.step % opts.log_every == 0 or pos.step == opts.steps:
            self.log.write(pos.step, "train", iteration_metrics(result))
        if pos.step % opts.image_every == 0:
            save_grid(self.out / "images" / "train" / f"{pos.step:07d}.png", x, result.w_inversion, result.images)
        if pos.step % opts.val_every == 0 or pos.step == opts.steps:
            metrics = self.validate()
            if pos.best_val_loss is None or metrics["loss"] < pos.best_val_loss:
                pos.best_val_loss = metrics["loss"]
                save_hyperstyle(self.model, self.out / BEST_FILE, self._model_opts())
        if pos.step % opts.save_every == 0 or pos.step == opts.steps:
            self.save()

    def _model_opts(self) -> dict:
        return {**self.options.to_dict(), "global_step": self.position.step,
                "best_val_loss": self.position.best_val_loss}

    def save(self) -> None:
        """`latest` model, then the resume state (the state alone is enough to resume)."""
        save_hyperstyle(self.model, self.out / LATEST_FILE, self._model_opts())
        save_state(self.state_path, self.model, self.optimizer, self.position, self._checked_options(), self.scaler)

    # ------------------------------------------------------------------------------------------- validation
    def validate(self, write: bool = True) -> dict[str, float]:
        """Coach.validate: the hypernet in eval mode, no gradients, losses averaged over the test batches
        (the official keys are the last iteration's; `<key>_iter<i>` every iteration's)."""
        opts = self.options
        batches = validation_batches(len(self.test_set), opts.test_batch_size, opts.max_val_batches)
        self.model.hypernet.eval()
        totals: dict[str, float] = {}
        try:
            for b, items in enumerate(batches):
                x = load_batch(self.test_set, items).to(self.device)
                result = run_iterations(self.model, self.w_encoder, self.loss_fn, x, x, opts.n_iters, train=False,
                                        amp=opts.amp)
                for key, value in iteration_metrics(result).items():
                    totals[key] = totals.get(key, 0.0) + value
                if b == 0 and write:
                    save_grid(self.out / "images" / "test" / f"{self.position.step:07d}.png", x,
                              result.w_inversion, result.images)
        finally:
            self.model.hypernet.train()
        metrics = {k: v / len(batches) for k, v in totals.items()}
        if write:
            self.log.write(self.position.step, "test", metrics)
        return metrics


def iteration_metrics(result: ForwardResult) -> dict[str, float]:
    """The last iteration's official loss_dict plus every iteration's values as `<key>_iter<i>` (1-based)."""
    metrics = dict(result.metrics[-1])
    for i, m in enumerate(result.metrics, start=1):
        metrics.update({f"{k}_iter{i}": v for k, v in m.items()})
    return metrics


def _prepare(model: HyperStyleModel, w_encoder: WEncoderModel, loss_fn: HyperStyleLoss, options: TrainOptions,
             device: torch.device) -> tuple[HyperStyleModel, WEncoderModel, HyperStyleLoss]:
    """Move to the device, conv weights in the plain layout (see nn.engine.layout: loading gives CPU models the
    channels-last inference layout); only the hypernet (and with train_decoder the decoder) takes gradients."""
    model, w_encoder, loss_fn = model.to(device), w_encoder.to(device), loss_fn.to(device)
    for module in (model, w_encoder, loss_fn):
        set_conv_weight_layout(module, torch.contiguous_format)
    model.requires_grad_(False)
    model.hypernet.requires_grad_(True).train()
    if options.train_decoder:
        model.decoder.requires_grad_(True)
    return model, w_encoder.eval().requires_grad_(False), loss_fn
