"""The pack's socket types (HYPERSTYLE_*): what object each carries and which node gives it.

ComfyUI checks socket type names when a graph is queued, but the objects themselves can still be wrong: an API
prompt, another pack's wildcard ("*") node, or a stale cache can hand a W-encoder to an input that needs a HyperStyle
model. `checks_pack_inputs` makes such a node stop at once with a message naming the node to connect, instead of
failing later inside the core with an internal message.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..hyperstyle_core import (KIND_TITLES, AlignedBatch, GanSpaceDirections, Generator, HyperStyleModel,
                               LatentDirection, ReStyleE4EModel, WeightDeltas, WEncoderModel, kind_of)
from ._names import short_name


@dataclass(frozen=True)
class Socket:
    python_type: type        # what the socket carries
    what: str                # how messages name it: "a HyperStyle model"
    source: str              # where it comes from: "the model output of HyperStyle Load Model"


# The sources name nodes by their short names (nodes/_names.py), which start their display names.
PACK_TYPES: dict[str, Socket] = {
    "HYPERSTYLE_MODEL": Socket(HyperStyleModel, "a HyperStyle model", "the model output of HyperStyle Load Model"),
    "HYPERSTYLE_W_ENCODER": Socket(WEncoderModel, "a W-encoder", "HyperStyle Load W-Encoder"),
    "HYPERSTYLE_GENERATOR": Socket(Generator, "a StyleGAN2 generator",
                                   "HyperStyle Load Generator (or the generator output of HyperStyle Load Model)"),
    "HYPERSTYLE_RESTYLE": Socket(ReStyleE4EModel, "a ReStyle-e4e encoder", "HyperStyle Load ReStyle-e4e"),
    "HYPERSTYLE_DIRECTION": Socket(LatentDirection, "a latent direction",
                                   "HyperStyle Load Direction or HyperStyle Fit Direction"),
    "HYPERSTYLE_LATENT": Socket(torch.Tensor, "latent codes", "the latent output of HyperStyle Encode, HyperStyle "
                                                              "Encode ReStyle or HyperStyle Load Latent"),
    "HYPERSTYLE_DELTAS": Socket(WeightDeltas, "weight deltas",
                                "the deltas output of HyperStyle Refine or HyperStyle Load Deltas"),
    "HYPERSTYLE_GANSPACE": Socket(GanSpaceDirections, "GANSpace directions",
                                  "HyperStyle Load GANSpace or HyperStyle Compute GANSpace"),
    "HYPERSTYLE_ALIGNMENT": Socket(AlignedBatch, "alignment info", "the alignment output of HyperStyle Align Face"),
}


def _describe(value: Any) -> str:
    kind = kind_of(value)
    if kind is not None:
        return f"a {KIND_TITLES[kind]}"
    return "nothing (None)" if value is None else f"a {type(value).__name__}"


def check_pack_input(value: Any, socket: str, node: str, input_name: str) -> None:
    """Raise ValueError naming the node to connect unless `value` is what socket type `socket` carries."""
    expected = PACK_TYPES[socket]
    if not isinstance(value, expected.python_type):
        raise ValueError(f"{node}: {input_name} needs {expected.what} but got {_describe(value)}; connect "
                         f"{expected.source} to it")


@functools.cache
def _pack_sockets(cls: type) -> tuple[dict[str, str], frozenset[str]]:
    """(input name -> HYPERSTYLE_* socket, names of the optional ones) from the node's INPUT_TYPES; read on first
    use, not at import, since the INPUT_TYPES of file pickers lists the model folders."""
    sockets, optional = {}, set()
    for section, inputs in cls.INPUT_TYPES().items():
        for name, spec in inputs.items():
            if isinstance(spec, tuple) and isinstance(spec[0], str) and spec[0] in PACK_TYPES:
                sockets[name] = spec[0]
                if section == "optional":
                    optional.add(name)
    return sockets, frozenset(optional)


def checks_pack_inputs(cls: type) -> type:
    """Class decorator: the node's `execute` first checks every HYPERSTYLE_* input (unconnected optional inputs,
    None, are allowed) with `check_pack_input`, naming the node by its short name."""
    execute: Callable = cls.execute
    signature = inspect.signature(execute)
    node = short_name(cls.__name__)

    @functools.wraps(execute)
    def checked(self, *args, **kwargs):
        sockets, optional = _pack_sockets(cls)
        bound = signature.bind(self, *args, **kwargs)
        for name, socket in sockets.items():
            value = bound.arguments.get(name)
            if not (value is None and name in optional):
                check_pack_input(value, socket, node, name)
        return execute(self, *args, **kwargs)

    cls.execute = checked
    return cls
