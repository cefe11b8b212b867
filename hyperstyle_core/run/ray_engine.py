"""`hyperstyle run --engine ray`: the folder run on a Ray cluster (Ray Data), with the embedded engine's outputs,
manifest and guarantees.

    summary = run_folder_on_ray(["photos/"], "out/", RunOptions(models="models"), RayOptions(actors=8,
                                gpus_per_actor=1))

The driver (this process: `RayFolderRunner`, a `run.runner.FolderRunner`) lists the inputs (a list file streams in
groups, `run.input_list`), plans each group as the embedded engine does (`run.plan`), and is the only writer of
the manifest and the summary. The plans go to a Ray Data pipeline: `map_batches(PlanActor,
compute=ActorPoolStrategy(size=actors))`, where each actor loads the models once and runs `run.worker.FileWorker`
on a batch of plans (read, align, render, write: the embedded engine's code) and returns one result per file as
JSON text. The driver records each result as it streams back, so a killed driver leaves a resumable manifest, and
either engine resumes the other's run.

Outputs are written by the actors into the output folder, which every node must see at the same path (NFS or
similar), as the inputs. Each output is written atomically (temp file + rename): a killed actor's batch is
retried by Ray (`max_restarts` / `max_task_retries`) and rewrites the same files whole, and the driver gets that
batch's results once, so every input gets exactly one record. Ray is optional: `pip install -r requirements-ray.txt`.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from ..devices import keep_freed_memory
from .manifest import OutputFolderError, RunSummary
from .models import ModelFiles, RunModels
from .options import RunOptions
from .plan import FilePlan
from .runner import FolderRunner, OnRecord, run_with
from .work import FileResult
from .worker import FileWorker, ModelNeeds, default_batch_size, model_needs

__all__ = ["RayOptions", "run_folder_on_ray", "RayFolderRunner", "PlanActor", "RAY_INSTALL", "KILL_ONCE_ENV"]

log = logging.getLogger(__name__)

RAY_INSTALL = "pip install -r requirements-ray.txt"
# Fault injection for tests: a file whose content is an input's key; the actor about to process that input removes
# the file and exits at once (os._exit), once across all actors (only one unlink succeeds).
KILL_ONCE_ENV = "HYPERSTYLE_RAY_KILL_ONCE"
FATAL = "fatal"         # the key of an actor's answer that stops the run (the output folder cannot be written)


@dataclass
class RayOptions:
    """Where and how wide a Ray run goes.

    Attributes:
        address: None starts a local Ray instance on this machine; "auto" joins the cluster this machine belongs
            to; "ray://host:10001" connects a client to a remote cluster's head.
        actors: workers, each holding its own copy of the models.
        gpus_per_actor: GPUs reserved per actor (0: CPU actors; 0.5: two actors share a GPU).
        cpus_per_actor: CPUs reserved per actor (torch uses them for its threads on CPU actors).
        batch_size: plans sent to an actor at a time (default: the run's batch size, else 4 on GPU actors, 1 on
            CPU ones); the actor renders them in batches of the run's batch size.
        max_restarts, max_task_retries: how often Ray restarts a dead actor and retries its batch.
    """
    address: str | None = None
    actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    batch_size: int | None = None
    max_restarts: int = 3
    max_task_retries: int = 3

    def check(self) -> None:
        for name in ("actors", "max_restarts", "max_task_retries") + (("batch_size",) if self.batch_size else ()):
            value = getattr(self, name)
            low = 1 if name in ("actors", "batch_size") else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer of at least {low}, got {value!r}")
        for name in ("gpus_per_actor", "cpus_per_actor"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.address is not None and not (self.address == "auto" or self.address.startswith("ray://")
                                             or ":" in self.address):
            raise ValueError(f"--address {self.address!r}: give auto (the cluster of this machine), ray://HOST:PORT "
                             f"(a remote cluster's head) or HOST:PORT; leave it out to start Ray on this machine")


def import_ray():
    """The `ray` module (with Ray Data); a ValueError saying how to install it when it is not there."""
    try:
        import ray          # optional: only --engine ray needs it; importing it never happens on the embedded path
        import ray.data     # noqa: F401 - Ray Data ships as the ray[data] extra
    except ImportError as e:
        raise ValueError(f"--engine ray needs Ray with Ray Data ({e}); install it with `{RAY_INSTALL}`, or leave "
                         f"out --engine ray to run here") from None
    return ray


def run_folder_on_ray(inputs: Sequence[str | os.PathLike] | str | os.PathLike, output: str | os.PathLike,
                      options: RunOptions | None = None, ray_options: RayOptions | None = None,
                      progress: bool = False, on_record: OnRecord | None = None,
                      input_list: str | os.PathLike | None = None) -> RunSummary:
    """`run.runner.run_folder` on Ray actors; the same arguments, outputs and manifest, plus `ray_options`.
    Uses the Ray instance already initialised in this process, else `ray.init(address=ray_options.address)`
    (shut down at the end). Raises ValueError when Ray is not installed."""
    ray_options = ray_options or RayOptions()
    ray_options.check()
    import_ray()
    return run_with(RayFolderRunner, inputs, output, options, progress, on_record, input_list,
                    ray_options=ray_options)


class RayFolderRunner(FolderRunner):
    """The driver of a Ray run: `FolderRunner` whose pending files are processed by an actor pool."""

    def __init__(self, *args, ray_options: RayOptions, **kwargs):
        super().__init__(*args, **kwargs)
        self.ray_options = ray_options

    def run(self) -> RunSummary:
        ray = import_ray()
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.ray_options.address, include_dashboard=False, logging_level=logging.WARNING)
        # Our tqdm bar (images/s) is the progress; Ray Data's own bars would draw over it.
        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            return super().run()
        finally:
            if started:
                ray.shutdown()

    def _batch_size(self) -> int:
        ro = self.ray_options
        return ro.batch_size or self.options.batch_size or default_batch_size(ro.gpus_per_actor > 0)

    def _results(self, pending: list[FilePlan]) -> Iterator[FileResult]:
        if not pending:
            return
        ray = import_ray()
        ro = self.ray_options
        # Rows carry positions only: the plans reach each actor once, through Ray's own transfer of the
        # constructor arguments (as the options and model files do).
        rows = [{"plan": index} for index in range(len(pending))]
        batch_size = self._batch_size()
        worker_batch = self.options.batch_size or default_batch_size(ro.gpus_per_actor > 0)
        with warnings.catch_warnings():
            # Ray 2.60 has no named parameter for these yet (its default retries forever: a file that kills its
            # worker every time would stall the run); requirements-ray.txt stays below 2.64, which removes them.
            warnings.filterwarnings("ignore", message=".*ray_remote_args. is deprecated")
            # One block per batch: a map task works through a whole block before its results come back, so
            # blocks of one batch spread the work over every actor, stream results per batch and make a retry
            # redo one batch.
            blocks = ray.data.from_items(rows, override_num_blocks=-(-len(rows) // batch_size))
            results = blocks.map_batches(
                PlanActor, compute=ray.data.ActorPoolStrategy(size=ro.actors), batch_size=batch_size,
                batch_format="pandas", num_cpus=ro.cpus_per_actor, num_gpus=ro.gpus_per_actor or None,
                fn_constructor_kwargs={"plans": pending, "options": self.options, "output": str(self.output),
                                       "files": self.files,
                                       "needs": model_needs(pending, self.options),
                                       "restyle_latents": self.restyle_latents, "batch_size": worker_batch,
                                       "threads": max(1, int(ro.cpus_per_actor))},
                max_restarts=ro.max_restarts, max_task_retries=ro.max_task_retries)
        started = None
        rows_back = results.iter_rows()
        try:
            for row in rows_back:
                sent = json.loads(row["result"])
                if FATAL in sent:       # the output folder cannot be written: stop, as the embedded engine
                    raise OutputFolderError(sent[FATAL])
                result = FileResult.from_dict(sent)
                if started is None:
                    # Processing began when the first file was fed, its models loaded (as the embedded engine
                    # counts): actor start-up and model loading stay out of images/s.
                    started = time.perf_counter() - result.timings.get("total", 0.0)
                yield result
        finally:
            close = getattr(rows_back, "close", None)
            if close is not None:   # stops the pipeline (and its actors) when the driver stops early
                close()
        if started is not None:
            self.summary.seconds += time.perf_counter() - started


class PlanActor:
    """A Ray Data callable class: loads the models once, then turns batches of plan positions into results (one
    JSON text per file). Its FileWorker is the embedded engine's."""

    def __init__(self, plans: list[FilePlan], options: RunOptions, output: str, files: ModelFiles,
                 needs: ModelNeeds, restyle_latents: dict[Path, torch.Tensor], batch_size: int, threads: int):
        # Ray sets OMP_NUM_THREADS for the actor's CPUs, but a worker process that imported torch before keeps its
        # old thread count (it can stay at one thread on a multi-CPU actor): say it to torch directly.
        torch.set_num_threads(threads)
        keep_freed_memory()     # a process of our own, as the CLI's: reuse freed 1024-px buffers (devices.py)
        models = RunModels(options, files) if options.needs_models else None
        self.worker = FileWorker(options, Path(output), models, restyle_latents, batch_size)
        self.worker.load_models(needs)
        self.plans = plans

    def __call__(self, batch) -> dict[str, list[str]]:
        """batch["plan"]: plan positions -> {"result": one JSON text per file (`FileResult.to_dict`), then
        {FATAL: message} if the output folder could not be written}."""
        plans: list[FilePlan] = [self.plans[int(index)] for index in batch["plan"]]
        sent: list[dict] = []
        try:
            for plan in plans:
                _kill_if_asked(plan)
                sent += [result.to_dict() for result in self.worker.feed(plan)]
            sent += [result.to_dict() for result in self.worker.flush()]
        except OutputFolderError as e:
            sent.append({FATAL: str(e)})
        return {"result": [json.dumps(r) for r in sent]}


def _kill_if_asked(plan: FilePlan) -> None:
    """Test hook (`KILL_ONCE_ENV`): die like a killed worker, once, when about to process the named file."""
    marker = os.environ.get(KILL_ONCE_ENV)
    if not marker:
        return
    try:
        named = Path(marker).read_text("utf-8").strip()
    except OSError:     # already used (or never there): nothing to do
        return
    if named == plan.file.key:
        try:
            os.unlink(marker)
        except OSError:     # another actor took it first
            return
        os._exit(1)
