"""`hyperstyle train`: train (or fine-tune) the hypernetwork on folders of aligned images (train.api.build_trainer).

Running the same command again continues the run in --out where it stopped (same options required).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..train.api import build_trainer
from ..train.options import TrainOptions
from ..train.state import BEST_FILE, LATEST_FILE, STATE_FILE


def options_from_args(args: argparse.Namespace) -> TrainOptions:
    return TrainOptions(domain=args.domain, steps=args.steps, batch_size=args.batch_size,
                        test_batch_size=args.test_batch_size or args.batch_size, n_iters=args.iters, lr=args.lr,
                        optimizer=args.optimizer, l2=args.l2, lpips=args.lpips, id=args.id, moco=args.moco,
                        train_decoder=args.train_decoder, layers=args.layers or "", seed=args.seed,
                        val_every=args.val_every, save_every=args.save_every, image_every=args.image_every,
                        log_every=args.log_every, max_val_batches=args.max_val_batches, amp=args.amp,
                        source=",".join(Path(p).name for p in (args.generator, args.w_encoder, args.from_model) if p))


def cmd_train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if (out / STATE_FILE).exists():
        print(f"continuing the run in {out} ({STATE_FILE} found)")
    trainer = build_trainer(args.train, args.test, args.w_encoder, out, options_from_args(args),
                            generator=args.generator, from_model=args.from_model, models_dir=args.models,
                            backbone=args.backbone, device=args.device, progress=not args.quiet)
    position = trainer.run()
    print(f"done: {position.step} steps, best validation loss {position.best_val_loss}; models: {out / LATEST_FILE}, "
          f"{out / BEST_FILE}")
    return 0
