"""StyleCLIP global directions in style space (S), as HyperStyle's editing/styleclip uses them.

The official pipeline (editing/styleclip/edit.py, global_direction.py, stylespace_utils.py):

1. Render the inverted codes with the image's weight deltas and keep the S codes (every modulated layer's modulation
   output, ToRGB included). Here: `generator.style_codes(latent)`, a dict {layer name: [B, dim]}.
2. Text direction: each text is formatted with ~79 prompt templates, embedded by CLIP's text encoder, each embedding
   L2-normalised, averaged, renormalised; `delta_i = normalise(t_target - t_neutral)` [D].
3. Channel relevance `r_c = delta_i_c @ delta_i` with `delta_i_c` [n_channels, D] the per-channel CLIP image-space
   directions of the generator ("fs3"); channels with |r_c| < beta are zeroed, the rest divided by max |r_c|.
4. `features_channels_to_s`: the channel values, times each channel's S standard deviation, fill the first 11
   non-ToRGB layers (official quirk: later conv layers and all ToRGB layers get zeros).
5. Edit `s + alpha * direction` and re-render from S (modulation skipped) with the same deltas.

Official S lists are indexed like the official `weights_deltas` list (conv1, to_rgb1, then per block convs[2b],
convs[2b+1], to_rgbs[b]) and hold [B, 1, dim, 1, 1] tensors; `official_layer_names` gives the names of that order
and `style_codes_to_official` / `official_to_style_codes` convert. Official S statistics (S_mean_std) are a pickle:
`read_s_mean_std` reads it with an unpickler that admits numpy arrays only; `save_s_stats` writes safetensors.

CLIP is optional (`pip install openai-clip "setuptools<81"`) and imported only by the functions that need it. Its
model file is never downloaded: `load_clip(path)` reads a user-given ViT checkpoint (safetensors, a plain state-dict
.pt, or OpenAI's TorchScript archive, whose tensors are read without running `torch.jit.load`).

`compute_channel_directions` rebuilds `delta_i_c` for any generator (StyleCLIP global_directions/SingleChannel.py):
per channel, set it to mean +/- alpha*std over sampled latents, render, embed with CLIP's image encoder and average
the normalised embedding differences.
"""
from __future__ import annotations

import io
import json
import logging
import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .stylegan2 import Generator

log = logging.getLogger(__name__)

S_STATS_FORMAT = "hyperstyle.styleclip_s_stats"
CHANNEL_DIRECTIONS_FORMAT = "hyperstyle.styleclip_channel_directions"
CLIP_FORMAT = "hyperstyle.clip"
FORMAT_VERSION = "1"

# features_channels_to_s fills STYLESPACE_INDICES_WITHOUT_TORGB[:11]: the non-ToRGB layers up to 128px (StyleCLIP's
# SingleChannel.py computes channel directions only there).
OFFICIAL_EDIT_LAYER_COUNT = 11

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_INSTALL = 'pip install openai-clip "setuptools<81"'

# The official prompt templates live in the official repository's editing/styleclip/global_directions/templates.txt
# (the CLIP paper's ImageNet templates): read them with load_templates(); they are not bundled here.
FALLBACK_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)

StyleStd = Union[Sequence[Union[np.ndarray, torch.Tensor]], Mapping[str, Union[np.ndarray, torch.Tensor]]]
Progress = Callable[[int, int], None]


# ------------------------------------------------------------------------------------------------ layer layout

def official_layer_names(n_layers: int) -> list[str]:
    """Generator layer names of an official S list (or S_mean_std) with `n_layers` entries, in index order.

    An official list has 3*log2(size) - 4 entries: 20 at 256px, 23 at 512px, 26 at 1024px (S_mean_std of FFHQ).
    """
    log_size, rem = divmod(n_layers + 4, 3)
    if rem or log_size < 3:
        raise ValueError(f"an official S list has 3*log2(size)-4 entries (20 at 256px, 23 at 512px, 26 at 1024px); "
                         f"got {n_layers}")
    names = ["conv1", "to_rgb1"]
    for b in range(log_size - 2):
        names += [f"convs.{2 * b}", f"convs.{2 * b + 1}", f"to_rgbs.{b}"]
    return names


def is_torgb_layer(name: str) -> bool:
    """True for ToRGB layers (`to_rgb1`, `to_rgbs.<b>`), whose S codes StyleCLIP never edits."""
    return name.startswith("to_rgb")


def styleclip_edit_layers(layer_names: Sequence[str], count: int | None = OFFICIAL_EDIT_LAYER_COUNT) -> list[str]:
    """The layers a global direction fills: the first `count` non-ToRGB layers (official: 11; None = all)."""
    names = [n for n in layer_names if not is_torgb_layer(n)]
    return names if count is None else names[:count]


def style_codes_to_official(style_codes: Mapping[str, torch.Tensor],
                            layer_names: Sequence[str]) -> list[torch.Tensor]:
    """{layer: [B, dim]} -> the official S list, one [B, 1, dim, 1, 1] tensor per layer in `layer_names` order."""
    missing = [n for n in layer_names if n not in style_codes]
    if missing:
        raise ValueError(f"style codes lack layers {missing[:3]}; expected every layer of {list(layer_names)[:3]}...")
    out = []
    for name in layer_names:
        s = style_codes[name]
        if s.ndim != 2:
            raise ValueError(f"style code {name!r} has shape {list(s.shape)}; expected [B, dim]")
        out.append(s.reshape(s.shape[0], 1, s.shape[1], 1, 1))
    return out


def official_to_style_codes(s_list: Sequence[torch.Tensor],
                            layer_names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Official S list ([B, 1, dim, 1, 1], [B, dim] or [dim] entries) -> {layer: [B, dim]}.

    `layer_names` defaults to `official_layer_names(len(s_list))`.
    """
    names = official_layer_names(len(s_list)) if layer_names is None else list(layer_names)
    if len(names) != len(s_list):
        raise ValueError(f"{len(s_list)} S entries but {len(names)} layer names")
    out = {}
    for name, s in zip(names, s_list):
        s = torch.as_tensor(s)
        if s.ndim == 5 and s.shape[1] == 1 and s.shape[3:] == (1, 1):
            s = s.reshape(s.shape[0], s.shape[2])
        elif s.ndim == 1:
            s = s.unsqueeze(0)
        elif s.ndim != 2:
            raise ValueError(f"S entry {name!r} has shape {list(s.shape)}; expected [B, 1, dim, 1, 1], [B, dim] "
                             f"or [dim]")
        out[name] = s
    return out


def render_style_codes(generator: Generator, style_codes: Mapping[str, torch.Tensor],
                       deltas: Mapping[str, torch.Tensor] | None = None,
                       randomize_noise: bool = False) -> torch.Tensor:
    """Render S codes (modulation skipped, official `input_is_stylespace=True`) with optional weight deltas.

    Args:
        generator: the generator the codes and deltas belong to.
        style_codes: {layer: [B, dim]} for every layer of `generator.layer_names`.
        deltas: WeightDeltas (or a plain {layer: [B or 1, out, in, k, k]} mapping) of batch B or 1.
        randomize_noise: fresh noise instead of the stored noise buffers (official edits use the buffers).
    Returns:
        [B, 3, H, W], roughly in [-1, 1] (the generator's output crop applied, as `generate` does).
    """
    param = generator.input.input
    codes = {n: style_codes[n].to(device=param.device, dtype=param.dtype) for n in generator.layer_names
             if n in style_codes}
    delta_map = None
    if deltas is not None:
        check = getattr(deltas, "check_compatible", None)
        if check is not None:
            check(generator)
        batch = next(iter(codes.values())).shape[0] if codes else 0
        sizes = {t.shape[0] for t in deltas.values() if t.ndim == 5}
        if sizes - {1, batch}:
            raise ValueError(f"deltas have batch {sorted(sizes)} but there are {batch} style codes; pick one "
                             f"sample's deltas with deltas.index(i) or pass matching batches")
        delta_map = {n: t.to(device=param.device, dtype=param.dtype) for n, t in deltas.items()}
    with torch.no_grad():
        images = generator(deltas=delta_map, randomize_noise=randomize_noise, style_codes=codes)
    crop = generator.config.output_crop
    return images[:, :, crop[0]:crop[1], :] if crop else images


# ------------------------------------------------------------------------------------------------ S statistics

def _numpy_array_globals() -> dict[tuple[str, str], Any]:
    """The callables numpy's array pickles reference (protocols 2-5, numpy 1.x and 2.x module paths)."""
    import codecs

    core = getattr(np, "_core", None) or np.core
    found = {"_reconstruct": core.multiarray._reconstruct, "scalar": core.multiarray.scalar,
             "_frombuffer": core.numeric._frombuffer}
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): codecs.encode}  # protocol 2 writes bytes this way
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = found["_reconstruct"]
        allowed[(f"{package}.multiarray", "scalar")] = found["scalar"]
        allowed[(f"{package}.numeric", "_frombuffer")] = found["_frombuffer"]  # protocol 5
    return allowed


class _NumpyArrayUnpickler(pickle.Unpickler):
    """Unpickler that can build numpy arrays (and lists/tuples of them) and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _numpy_array_globals()
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise pickle.UnpicklingError(
            f"refused to load {module}.{name}: an S statistics pickle may only contain numpy arrays. The file is not "
            f"the official S_mean_std (or was tampered with); use the official file or a .safetensors written by "
            f"save_s_stats")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused a persistent id: an S statistics pickle may only contain numpy arrays")


def _as_stat_list(items: Any, what: str, source: str) -> list[np.ndarray]:
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"{source}: {what} must be a non-empty list of 1-D float arrays, got {type(items).__name__}")
    out = []
    for i, a in enumerate(items):
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().numpy()
        if not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype.kind != "f" or a.size == 0:
            desc = f"{a.dtype} {list(a.shape)}" if isinstance(a, np.ndarray) else type(a).__name__
            raise ValueError(f"{source}: {what}[{i}] is {desc}; expected a 1-D float array (one value per channel)")
        out.append(np.ascontiguousarray(a, dtype=np.float32))
    return out


def _check_stats(means: Any, stds: Any, source: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    m = _as_stat_list(means, "means", source)
    s = _as_stat_list(stds, "stds", source)
    if [a.shape for a in m] != [a.shape for a in s]:
        raise ValueError(f"{source}: means and stds differ in layer count or sizes "
                         f"({[a.size for a in m]} vs {[a.size for a in s]})")
    return m, s


def read_s_mean_std(path: str | os.PathLike) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Read the official StyleCLIP `S_mean_std` pickle without running arbitrary code.

    The pickle is `(means, stds)`: two lists of float32 arrays, one per S layer in official order (26 for the FFHQ
    1024px generator; entry c matches layer c of smaller generators too). Only numpy's array reconstruction is
    admitted; anything else raises `pickle.UnpicklingError`.

    Returns:
        (means, stds): lists of [dim_c] float32 arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist. The official file is "
                                f"editing/styleclip/global_directions/ffhq/S_mean_std of the HyperStyle repository")
    with open(path, "rb") as f:
        try:
            data = _NumpyArrayUnpickler(f).load()
        except pickle.UnpicklingError:
            raise
        except Exception as e:  # a truncated or non-pickle file fails in many ways
            raise ValueError(f"{path.name} is not a readable S statistics pickle ({type(e).__name__}: {e})") from None
    if not isinstance(data, (list, tuple)) or len(data) != 2:
        raise ValueError(f"{path.name} holds {type(data).__name__}; expected the pair (means, stds) of "
                         f"StyleCLIP's S_mean_std")
    return _check_stats(data[0], data[1], path.name)


def save_s_stats(path: str | os.PathLike, means: Sequence[np.ndarray | torch.Tensor],
                 stds: Sequence[np.ndarray | torch.Tensor], layer_names: Sequence[str] | None = None,
                 extra_metadata: Mapping[str, str] | None = None) -> Path:
    """Write S statistics as safetensors (`mean.<c>`, `std.<c>` float32 [dim_c]) with metadata.

    Args:
        means, stds: per-layer [dim_c] arrays in official order (e.g. from `read_s_mean_std`/`compute_s_stats`).
        layer_names: names of the entries; defaults to `official_layer_names(len(means))`.
    Returns:
        The written path.
    """
    from safetensors.torch import save_file

    from .io_utils import atomic_path

    m, s = _check_stats(list(means), list(stds), "save_s_stats")
    names = official_layer_names(len(m)) if layer_names is None else list(layer_names)
    if len(names) != len(m):
        raise ValueError(f"{len(m)} layers of statistics but {len(names)} layer names")
    tensors = {}
    for c, (a, b) in enumerate(zip(m, s)):
        tensors[f"mean.{c:02d}"] = torch.from_numpy(a.copy())
        tensors[f"std.{c:02d}"] = torch.from_numpy(b.copy())
    meta = {"format": S_STATS_FORMAT, "version": FORMAT_VERSION,
            "layers": json.dumps([[n, int(a.size)] for n, a in zip(names, m)])}
    meta.update({k: str(v) for k, v in (extra_metadata or {}).items()})
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def load_s_stats(path: str | os.PathLike) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Read S statistics written by `save_s_stats`. Returns (means, stds) as lists of [dim_c] float32 arrays."""
    from safetensors.torch import load_file

    from .io_utils import read_safetensors_metadata

    path = Path(path)
    if path.suffix.lower() not in (".safetensors", ".sft") and path.is_file():
        raise ValueError(f"{path.name} is not a .safetensors file; read the official pickle with read_s_mean_std "
                         f"and convert it once with save_s_stats")
    meta = read_safetensors_metadata(path)
    if meta.get("format") != S_STATS_FORMAT:
        raise ValueError(f"{path.name} is not an S statistics file (format {meta.get('format')!r}); write one with "
                         f"save_s_stats(read_s_mean_std('S_mean_std'))")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path.name} has S statistics version {meta.get('version')}; this version reads "
                         f"{FORMAT_VERSION}")
    tensors = load_file(str(path))
    n = len(json.loads(meta["layers"]))
    try:
        means = [tensors[f"mean.{c:02d}"].numpy() for c in range(n)]
        stds = [tensors[f"std.{c:02d}"].numpy() for c in range(n)]
    except KeyError as e:
        raise ValueError(f"{path.name} lacks tensor {e.args[0]}; write it again with save_s_stats") from None
    return _check_stats(means, stds, path.name)


def _per_layer(stats: StyleStd, names: Sequence[str] | None, what: str) -> dict[str, torch.Tensor]:
    """Official-order list (or {layer: values}) -> {layer: float32 [dim] tensor}."""
    if isinstance(stats, Mapping):
        items = list(stats.items())
    else:
        stats = list(stats)
        layer_names = official_layer_names(len(stats)) if names is None else list(names)
        if len(layer_names) != len(stats):
            raise ValueError(f"{what} has {len(stats)} layers but {len(layer_names)} layer names were given")
        items = list(zip(layer_names, stats))
    out = {}
    for name, v in items:
        t = torch.from_numpy(np.asarray(v)) if not isinstance(v, torch.Tensor) else v
        if t.ndim != 1:
            raise ValueError(f"{what}[{name!r}] has shape {list(t.shape)}; expected [channels]")
        out[name] = t.float()
    return out


# ------------------------------------------------------------------------------------------------ text direction

def load_templates(path: str | os.PathLike) -> list[str]:
    """Prompt templates, one per line with a `{}` placeholder (blank lines skipped, line ends stripped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass the official templates.txt (editing/styleclip/global_directions/ in the official repository)")
    templates = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    _check_templates(templates)
    return templates


def _check_templates(templates: Sequence[str]) -> None:
    if isinstance(templates, str) or not templates:
        raise ValueError("templates must be a non-empty list of strings with a '{}' placeholder, e.g. "
                         "FALLBACK_TEMPLATES")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise ValueError(f"template {bad[0]!r} has no '{{}}' placeholder for the text")


def _import_clip():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # clip imports the deprecated pkg_resources
            import clip
            import clip.model
    except ImportError as e:
        raise ImportError(f"StyleCLIP needs OpenAI's CLIP package: {CLIP_INSTALL} ({e})") from e
    return clip


def _module_device(module: Any) -> torch.device:
    if isinstance(module, torch.nn.Module):
        for p in module.parameters():
            return p.device
    return torch.device("cpu")


def averaged_text_features(clip_model: Any, tokenize: Callable[[list[str]], Any] | None, texts: Sequence[str],
                           templates: Sequence[str] = FALLBACK_TEMPLATES) -> torch.Tensor:
    """Template-averaged CLIP text embeddings (official `_get_averaged_text_features`).

    For each text: embed `template.format(text)` for every template, L2-normalise each embedding, average, and
    normalise the mean.

    Args:
        clip_model: anything with `encode_text(tokens) -> [n_templates, D]` (a CLIP model).
        tokenize: turns a list of prompts into what `encode_text` takes; None = `clip.tokenize`.
        texts: the texts, e.g. [target, neutral].
        templates: prompt templates with a `{}` placeholder.
    Returns:
        [len(texts), D] float32, unit rows, on the CLIP model's device.
    """
    _check_templates(templates)
    if isinstance(texts, str) or not texts:
        raise ValueError("texts must be a non-empty list of strings")
    if tokenize is None:
        tokenize = _import_clip().tokenize
    device = _module_device(clip_model)
    features = []
    with torch.no_grad():
        for text in texts:
            tokens = tokenize([template.format(text) for template in templates])
            if isinstance(tokens, torch.Tensor):
                tokens = tokens.to(device)
            # Official keeps the encoder's dtype (fp16 on CUDA) until `.float()` after the difference; float32
            # from here on only changes results for half-precision models, where it is more accurate.
            emb = clip_model.encode_text(tokens).float()
            emb = emb / emb.norm(dim=-1, keepdim=True)
            mean = emb.mean(dim=0)
            features.append(mean / mean.norm())
    return torch.stack(features)


def text_direction(clip_model: Any, tokenize: Callable[[list[str]], Any] | None, neutral: str, target: str,
                   templates: Sequence[str] = FALLBACK_TEMPLATES) -> torch.Tensor:
    """CLIP text-space edit direction `delta_i = normalise(t(target) - t(neutral))` (official `get_delta_i`).

    Args:
        clip_model: a CLIP model (`encode_text`), see `load_clip`.
        tokenize: prompt tokenizer; None = `clip.tokenize`.
        neutral: text describing the image as it is, e.g. "face with hair".
        target: the wanted attribute, e.g. "face with long hair".
        templates: prompt templates (default: the official 79 ImageNet templates).
    Returns:
        [D] float32 unit vector.
    """
    features = averaged_text_features(clip_model, tokenize, [target, neutral], templates)
    delta_t = features[0] - features[1]
    norm = torch.norm(delta_t)
    if not torch.isfinite(norm) or norm <= 0:
        raise ValueError(f"neutral text {neutral!r} and target text {target!r} give the same CLIP embedding; "
                         f"describe the change in the target text")
    return (delta_t / norm).float()


# ------------------------------------------------------------------------------------------------ global direction

def channel_relevance(delta_i_c: torch.Tensor, delta_i: torch.Tensor) -> torch.Tensor:
    """r_c = delta_i_c @ delta_i: how much each S channel moves CLIP image space along the text direction.

    Args:
        delta_i_c: [n_channels, D] per-channel image-space directions (official fs3.npy rows, or
            `compute_channel_directions`).
        delta_i: [D] text direction.
    Returns:
        [n_channels] float32.
    """
    if delta_i_c.ndim != 2:
        raise ValueError(f"delta_i_c has shape {list(delta_i_c.shape)}; expected [n_channels, embed_dim]")
    if delta_i.ndim != 1 or delta_i.shape[0] != delta_i_c.shape[1]:
        raise ValueError(f"text direction has shape {list(delta_i.shape)} but the channel directions are "
                         f"{delta_i_c.shape[1]}-dimensional: use the CLIP model the channel directions were "
                         f"computed with (ViT-B/32 for the official fs3.npy)")
    return torch.matmul(delta_i_c.float(), delta_i.to(delta_i_c.device).float())


def threshold_relevance(r_c: torch.Tensor, beta: float) -> torch.Tensor:
    """Official disentanglement threshold: zero channels with |r_c| < beta, divide the rest by max |r_c|.

    Args:
        r_c: [n_channels] relevance.
        beta: threshold in [0, 1); the official UI sweeps 0.08-0.16, edit.py 0.11-0.16. Larger = fewer channels.
    Returns:
        [n_channels] in [-1, 1] (all zeros when no channel reaches beta).
    """
    if not 0.0 <= float(beta) < 1.0:
        raise ValueError(f"beta is {beta}; it is a cosine threshold in [0, 1) (official edits use 0.11-0.16)")
    delta_s = r_c.clone()
    delta_s[torch.abs(r_c) < beta] = 0
    max_value = torch.abs(delta_s).max()
    if max_value > 0:
        delta_s /= max_value
    else:
        log.warning("StyleCLIP: no channel has |relevance| >= beta=%s (max %.4f); the direction is zero. "
                    "Lower beta.", beta, torch.abs(r_c).max().item())
    return delta_s


def channels_to_style_direction(delta_s: torch.Tensor, s_std: StyleStd,
                                edit_layers: Sequence[str] | None = None,
                                layer_names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Spread channel values over S layers, scaled by each channel's std (official `features_channels_to_s`).

    Rows of `delta_s` are consumed in `edit_layers` order; layers outside `edit_layers` get zeros. Extra rows
    (official: fs3.npy's 6048 rows vs 5376 used) are ignored, as upstream.

    Args:
        delta_s: [n_channels] channel values (after `threshold_relevance`).
        s_std: per-layer S standard deviations: an official-order list ([dim_c] arrays, e.g. S_mean_std's stds) or
            {layer: [dim]}.
        edit_layers: layers that receive values; default `styleclip_edit_layers(layers of s_std)` (first 11
            non-ToRGB layers).
        layer_names: names of a list `s_std`'s entries; default `official_layer_names(len(s_std))`.
    Returns:
        {layer: [dim] float32} for every layer of `s_std`, in its order.
    """
    std = _per_layer(s_std, layer_names, "s_std")
    names = list(std)
    edit = styleclip_edit_layers(names) if edit_layers is None else list(edit_layers)
    unknown = [n for n in edit if n not in std]
    if unknown:
        raise ValueError(f"edit layers {unknown} are not in the S statistics' layers {names[:3]}...")
    needed = sum(std[n].numel() for n in edit)
    if delta_s.ndim != 1 or delta_s.shape[0] < needed:
        raise ValueError(f"channel values have shape {list(delta_s.shape)} but the edit layers "
                         f"{edit[0]}..{edit[-1]} need {needed} channels; the channel directions (delta_i_c) do not "
                         f"fit these S statistics")
    out, start = {}, 0
    edit_set = set(edit)
    offsets = {}
    for n in edit:
        offsets[n] = start
        start += std[n].numel()
    for n in names:
        s = std[n].to(delta_s.device)
        if n in edit_set:
            out[n] = delta_s[offsets[n]:offsets[n] + s.numel()] * s
        else:
            out[n] = torch.zeros(s.numel(), dtype=delta_s.dtype, device=delta_s.device)
    return out


def global_direction(delta_i: torch.Tensor, delta_i_c: torch.Tensor, s_std: StyleStd, beta: float,
                     edit_layers: Sequence[str] | None = None,
                     layer_names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """StyleCLIP global direction in S (official `StyleCLIPGlobalDirection.get_delta_s`).

    Args:
        delta_i: [D] text direction (`text_direction`).
        delta_i_c: [n_channels, D] per-channel image directions; rows follow `edit_layers` (official fs3.npy, or
            `compute_channel_directions`).
        s_std: per-layer S standard deviations, official-order list or {layer: [dim]}.
        beta: disentanglement threshold in [0, 1).
        edit_layers: layers that can change (default: the official first 11 non-ToRGB layers).
        layer_names: names of a list `s_std`'s entries (default from its length).
    Returns:
        {layer: [dim] float32} offsets for every layer of `s_std`; add `alpha *` them with `apply_global_direction`.
    """
    r_c = channel_relevance(delta_i_c, delta_i)
    return channels_to_style_direction(threshold_relevance(r_c, beta), s_std, edit_layers, layer_names)


def apply_global_direction(style_codes: Mapping[str, torch.Tensor], direction: Mapping[str, torch.Tensor],
                           alpha: float | torch.Tensor) -> dict[str, torch.Tensor]:
    """`s + alpha * direction` per layer; the input codes are not modified.

    Direction layers the generator lacks (a 1024px direction on a 256px generator: upstream zips the lists and
    drops the tail) must be all zero. Layers without a direction entry are copied unchanged.

    Args:
        style_codes: {layer: [B, dim]} S codes (`generator.style_codes(latent)`).
        direction: {layer: [dim]} (`global_direction`).
        alpha: edit strength (official sweeps -5..5), a float or a [B] tensor (one strength per sample).
    Returns:
        {layer: [B, dim]} edited codes, for `render_style_codes`.
    """
    for name, d in direction.items():
        if name not in style_codes and bool(torch.any(d != 0)):
            raise ValueError(f"the direction changes layer {name!r}, which these style codes do not have "
                             f"({len(style_codes)} layers); compute the direction from S statistics and channel "
                             f"directions of this generator")
    out = {}
    for name, s in style_codes.items():
        d = direction.get(name)
        if d is None:
            out[name] = s.clone()
            continue
        if d.ndim != 1 or d.shape[0] != s.shape[-1]:
            raise ValueError(f"direction for layer {name!r} has shape {list(d.shape)} but the style code has "
                             f"{s.shape[-1]} channels: the direction was made for another generator")
        d = d.to(device=s.device, dtype=s.dtype)
        if isinstance(alpha, torch.Tensor) and alpha.ndim > 0:
            if alpha.shape != (s.shape[0],):
                raise ValueError(f"alpha has shape {list(alpha.shape)}; expected a float or one value per sample "
                                 f"[{s.shape[0]}]")
            out[name] = s + alpha.to(device=s.device, dtype=s.dtype)[:, None] * d
        else:
            out[name] = s + float(alpha) * d
    return out


# ------------------------------------------------------------------------------------------------ CLIP files

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


class _StorageType:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


class _ScriptObject:
    """Stand-in for a TorchScript class instance: keeps the attribute state, runs no code."""

    def __init__(self, *args: Any):
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: Sequence[int], stride: Sequence[int],
                    requires_grad: bool = False, hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    return storage.as_strided(tuple(size), tuple(stride), int(offset))


class _TorchScriptUnpickler(pickle.Unpickler):
    """Reads the tensors of a TorchScript archive's data.pkl; admits module stand-ins, storages and tensors only."""

    def __init__(self, file: io.BytesIO, archive: zipfile.ZipFile, root: str):
        super().__init__(file)
        self.archive, self.root, self.storages = archive, root, {}

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__.") or module == "__torch__":
            return _ScriptObject
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "collections" and name == "OrderedDict":
            return dict
        raise pickle.UnpicklingError(f"refused to load {module}.{name} from a TorchScript archive: only module "
                                     f"attributes and tensors are read. Convert the weights to safetensors in a "
                                     f"trusted environment")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} in a TorchScript archive")
        _, stype, key, _location, numel = pid
        if key not in self.storages:
            try:
                raw = self.archive.read(f"{self.root}/data/{key}")
            except KeyError:
                raise ValueError(f"TorchScript archive lacks tensor storage data/{key}: the file is truncated") \
                    from None
            item = torch.empty((), dtype=stype.dtype).element_size()
            if len(raw) != int(numel) * item:
                raise ValueError(f"TorchScript storage data/{key} has {len(raw)} bytes, expected {numel} x {item}")
            self.storages[key] = torch.frombuffer(bytearray(raw), dtype=stype.dtype) if raw else \
                torch.empty(0, dtype=stype.dtype)
        return self.storages[key]


def _collect_tensors(obj: Any, prefix: str, out: dict[str, torch.Tensor], depth: int = 0) -> None:
    if depth > 64:
        raise ValueError("TorchScript module tree is deeper than 64 levels")
    state = obj.state if isinstance(obj, _ScriptObject) else None
    if not isinstance(state, dict):
        return
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            out[prefix + str(key)] = value.clone()
        elif isinstance(value, _ScriptObject):
            _collect_tensors(value, f"{prefix}{key}.", out, depth + 1)


def _torchscript_root(archive: zipfile.ZipFile) -> str | None:
    for name in archive.namelist():
        parts = name.split("/")
        if len(parts) >= 3 and parts[1] == "code":
            return parts[0]
        if len(parts) == 2 and parts[1] == "constants.pkl":
            return parts[0]
    return None


def _read_torchscript_tensors(path: Path, archive: zipfile.ZipFile, root: str) -> dict[str, torch.Tensor]:
    try:
        data = archive.read(f"{root}/data.pkl")
    except KeyError:
        raise ValueError(f"{path.name} is a TorchScript archive without data.pkl; it is corrupt") from None
    try:
        obj = _TorchScriptUnpickler(io.BytesIO(data), archive, root).load()
    except (pickle.UnpicklingError, ValueError):
        raise
    except Exception as e:
        raise ValueError(f"{path.name}: could not read the TorchScript tensors ({type(e).__name__}: {e})") from None
    out: dict[str, torch.Tensor] = {}
    _collect_tensors(obj, "", out)
    return out


def read_clip_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a CLIP checkpoint without executing code from the file.

    Reads `.safetensors`, OpenAI's TorchScript archives (ViT-B-32.pt: data.pkl is read with an unpickler that
    admits only module stand-ins and tensor storages; `torch.jit.load` is never called since it has no safe mode),
    and plain `torch.save`d state dicts (`torch.load(weights_only=True)`).

    Returns:
        {key: tensor} in the CLIP package's state-dict naming (dtype as stored, fp16 for OpenAI's files).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist. CLIP weights are never downloaded: put OpenAI's ViT-B-32.pt "
                                f"(or its .safetensors conversion) there")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            root = _torchscript_root(archive)
            if root is not None:
                return _read_torchscript_tensors(path, archive, root)
    elif path.suffix.lower() in (".safetensors", ".sft"):
        from safetensors.torch import load_file

        from .io_utils import read_safetensors_header
        read_safetensors_header(path)
        return load_file(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path.name} could not be read as a CLIP state dict with weights_only=True "
                         f"({type(e).__name__}: {str(e)[:200]}). Use OpenAI's ViT-B-32.pt or a .safetensors file") \
            from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path.name} does not hold a flat CLIP state dict")
    return dict(state)


def _clip_architecture(model: Any) -> dict[str, Any]:
    visual = model.visual
    return {"embed_dim": int(model.text_projection.shape[1]), "image_resolution": int(visual.input_resolution),
            "vit": hasattr(visual, "proj"), "context_length": int(model.context_length),
            "vocab_size": int(model.vocab_size), "transformer_width": int(model.ln_final.weight.shape[0])}


def _build_clip(state: Mapping[str, torch.Tensor], name: str) -> Any:
    clip = _import_clip()
    if "visual.conv1.weight" not in state and "visual.layer1.0.conv1.weight" not in state:
        raise ValueError(f"{name} is not a CLIP checkpoint (no visual.conv1.weight); expected OpenAI's ViT-B/32 "
                         f"weights (ViT-B-32.pt) or their .safetensors conversion")
    weights = {k: v for k, v in state.items() if k not in ("input_resolution", "context_length", "vocab_size")}
    try:
        model = clip.model.build_model(dict(state))
        # build_model rounds the weights to fp16 (OpenAI's storage dtype); reload them at full precision.
        model.float()
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, AssertionError) as e:
        raise ValueError(f"{name} does not fit the CLIP architecture: {str(e)[:300]}") from None
    return model.eval()


def load_clip(path: str | os.PathLike, device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.float32) -> Any:
    """Build a CLIP model from a user-given checkpoint with the package's own `clip.model.build_model`.

    Args:
        path: `.safetensors` (see `convert_clip_to_safetensors`), OpenAI's TorchScript `ViT-B-32.pt`, or a
            `torch.save`d state dict. Read without running code from the file (see `read_clip_state_dict`).
        device: where the model goes.
        dtype: parameter dtype (float32 default; float16 halves memory on GPUs).
    Returns:
        A `clip.model.CLIP` in eval mode (`encode_text`, `encode_image`, `visual.input_resolution`).
    """
    path = Path(path)
    model = _build_clip(read_clip_state_dict(path), path.name)
    return model.to(device=device, dtype=dtype)


def convert_clip_to_safetensors(src: str | os.PathLike, dst: str | os.PathLike | None = None) -> Path:
    """Convert a CLIP checkpoint (e.g. OpenAI's ViT-B-32.pt) to safetensors once; tensors keep their dtype.

    The weights are checked by building the model before writing. Metadata: format, version, architecture JSON and
    the source file name.

    Returns:
        The written path (default: `src` with the suffix `.safetensors`).
    """
    from safetensors.torch import save_file

    from .io_utils import atomic_path

    src = Path(src)
    state = read_clip_state_dict(src)
    model = _build_clip(state, src.name)
    dst = src.with_suffix(".safetensors") if dst is None else Path(dst)
    if dst.resolve() == src.resolve():
        raise ValueError(f"{dst} would overwrite the source; pass another destination")
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    meta = {"format": CLIP_FORMAT, "version": FORMAT_VERSION, "source": src.name,
            "architecture": json.dumps(_clip_architecture(model))}
    with atomic_path(dst) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return dst


def clip_image_preprocess(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Generator images -> CLIP image-encoder input.

    Mirrors CLIP's preprocess (shorter side to `resolution` with bicubic, centre crop, normalise) on tensors:
    antialiased bicubic resize instead of PIL's, and no uint8 round trip.

    Args:
        images: [B, 3, H, W] in [-1, 1] (clamped).
        resolution: CLIP input size (`clip_model.visual.input_resolution`, 224 for ViT-B/32).
    Returns:
        [B, 3, resolution, resolution] normalised with CLIP's mean and std.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images have shape {list(images.shape)}; expected [B, 3, H, W] in [-1, 1]")
    x = ((images.float().clamp(-1, 1) + 1) / 2)
    h, w = x.shape[2:]
    scale = resolution / min(h, w)
    new_h, new_w = max(resolution, round(h * scale)), max(resolution, round(w * scale))
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
    top, left = (new_h - resolution) // 2, (new_w - resolution) // 2
    x = x[:, :, top:top + resolution, left:left + resolution]
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def encode_images(clip_model: Any, images: torch.Tensor) -> torch.Tensor:
    """CLIP image embeddings of generator images [B, 3, H, W] in [-1, 1] -> [B, D] float32 (not normalised)."""
    resolution = int(clip_model.visual.input_resolution)
    device = _module_device(clip_model)
    dtype = clip_model.visual.conv1.weight.dtype
    x = clip_image_preprocess(images.to(device), resolution).to(dtype)
    with torch.no_grad():
        return clip_model.encode_image(x).float()


# ------------------------------------------------------------------------------------------------ channel directions

def sample_w(generator: Generator, n_samples: int, seed: int = 0, truncation: float = 0.7,
             w_avg: torch.Tensor | None = None, batch_size: int = 1000) -> torch.Tensor:
    """W codes of random z, truncated towards the average W as StyleCLIP's GetCode.py does (psi 0.7).

    Args:
        w_avg: [style_dim] average W (e.g. the generator file's latent_avg); None = mean of 10,000 mapped z.
    Returns:
        [n_samples, style_dim] on the generator's device.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples is {n_samples}; it must be at least 1")
    param = generator.input.input
    gen = torch.Generator().manual_seed(seed)
    d = generator.config.style_dim
    if w_avg is not None:
        if w_avg.shape[-1] != d:
            raise ValueError(f"w_avg has shape {list(w_avg.shape)}; expected [{d}] (or [n_latent, {d}], row 0 is used)")
        w_avg = w_avg.reshape(-1, d)[0]
    with torch.no_grad():
        if truncation != 1.0 and w_avg is None:
            z = torch.randn(10_000, d, generator=torch.Generator().manual_seed(seed + 1_000_003))
            w_avg = torch.cat([generator.mapping(c.to(param)) for c in z.split(batch_size)]).mean(0)
        z = torch.randn(n_samples, d, generator=gen)
        latent_avg = None if w_avg is None else w_avg.to(param)
        ws = [generator.mapping(c.to(param), truncation=truncation, truncation_latent=latent_avg)
              for c in z.split(batch_size)]
    return torch.cat(ws)


def _style_codes_of(generator: Generator, w: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        chunks = [generator.style_codes(c) for c in w.split(batch_size)]
    return {n: torch.cat([c[n] for c in chunks]) for n in generator.layer_names}


def compute_s_stats(generator: Generator, n_samples: int = 100_000, seed: int = 0, truncation: float = 0.7,
                    w_avg: torch.Tensor | None = None,
                    batch_size: int = 1000) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-channel mean and std of the S codes of random latents (StyleCLIP's S_mean_std for any generator).

    Official: 100,000 W samples with truncation 0.7, population std. Only the mapping and modulations run.

    Returns:
        (means, stds) lists of [dim_c] float32 arrays in `generator.layer_names` order (save with `save_s_stats`).
    """
    w = sample_w(generator, n_samples, seed, truncation, w_avg, batch_size)
    total = {n: None for n in generator.layer_names}
    total_sq = dict(total)
    with torch.no_grad():
        for chunk in w.split(batch_size):
            codes = generator.style_codes(chunk)
            for n in generator.layer_names:
                s = codes[n].double()
                total[n] = s.sum(0) if total[n] is None else total[n] + s.sum(0)
                total_sq[n] = (s * s).sum(0) if total_sq[n] is None else total_sq[n] + (s * s).sum(0)
    means, stds = [], []
    for n in generator.layer_names:
        mean = total[n] / n_samples
        var = (total_sq[n] / n_samples - mean * mean).clamp_min(0)
        means.append(mean.float().cpu().numpy())
        stds.append(var.sqrt().float().cpu().numpy())
    return means, stds


def compute_channel_directions(generator: Generator, clip_model: Any, n_samples: int = 100, *,
                               s_stats: tuple[StyleStd, StyleStd] | None = None,
                               layers: Sequence[str] | None = None, alpha: float = 5.0, truncation: float = 0.7,
                               w_avg: torch.Tensor | None = None, seed: int = 0, batch_size: int = 32,
                               stat_samples: int = 100_000, min_change: float = 1e-4,
                               progress: Progress | None = None) -> torch.Tensor:
    """Per-channel CLIP image-space directions `delta_i_c` (StyleCLIP's fs3.npy) for any generator.

    For every channel c of `layers` and each of `n_samples` random latents: set channel c to mean_c - alpha*std_c
    and mean_c + alpha*std_c (all other channels as sampled), render both, embed with CLIP's image encoder,
    normalise the embeddings and take the normalised difference (plus minus minus). The channel's direction is the
    normalised mean of these differences (StyleCLIP global_directions/SingleChannel.py: GetFs).

    Differences shorter than `min_change` (the channel barely changes the image) count as zero, and a channel whose
    differences all vanish gets a zero row instead of upstream's NaN, so it never passes the beta threshold.

    Args:
        generator: the StyleGAN2 generator (rendered without weight deltas and with its stored noise).
        clip_model: CLIP model (`encode_image`, `visual.input_resolution`), see `load_clip`.
        n_samples: latents per channel (official 100).
        s_stats: (means, stds) in official order or by layer; None = `compute_s_stats(generator, stat_samples)`.
        layers: layers whose channels get rows, in row order; default `styleclip_edit_layers(generator.layer_names)`
            (the official first 11 non-ToRGB layers, as `global_direction` expects by default).
        alpha: perturbation in standard deviations (official 5).
        truncation, w_avg, seed: latent sampling (see `sample_w`).
        batch_size: images per generator/CLIP call (half plus, half minus).
        min_change: norm below which an embedding difference counts as no change.
        progress: called as progress(done, total) in channel-sample pairs after each batch; raise to stop.
    Returns:
        [n_channels, D] float32 on the CPU, unit rows (zero rows for channels without effect); rows follow `layers`.
    """
    names = styleclip_edit_layers(generator.layer_names) if layers is None else list(layers)
    unknown = [n for n in names if n not in generator.layer_names]
    if unknown or not names:
        raise ValueError(f"layers {unknown or names} are not layers of this generator ({generator.layer_names})")
    if batch_size < 2:
        raise ValueError(f"batch_size is {batch_size}; it must be at least 2 (one plus and one minus image)")
    if s_stats is None:
        s_stats = compute_s_stats(generator, stat_samples, seed + 1, truncation, w_avg)
    # A list is in official order and may be longer than this generator's (1024px statistics on a 256px model).
    means = _per_layer(s_stats[0], None, "means")
    stds = _per_layer(s_stats[1], None, "stds")
    dims = {name: in_ch for name, _, in_ch, _ in generator.layer_table}
    for n in names:
        if n not in means or means[n].numel() != dims[n] or stds[n].numel() != dims[n]:
            raise ValueError(f"S statistics do not fit layer {n!r} ({dims[n]} channels); compute them for this "
                             f"generator with compute_s_stats")
    param = generator.input.input
    base = _style_codes_of(generator, sample_w(generator, n_samples, seed, truncation, w_avg), 256)
    layer_sizes = torch.tensor([dims[n] for n in names])
    ends = layer_sizes.cumsum(0)
    n_channels = int(ends[-1])
    starts = ends - layer_sizes
    values = {n: (means[n].to(param), stds[n].to(param)) for n in names}

    total = n_channels * n_samples
    pairs_per_batch = batch_size // 2
    sums = None
    done = 0
    for first in range(0, total, pairs_per_batch):
        pair = torch.arange(first, min(first + pairs_per_batch, total))
        k = pair.numel()
        channel, sample = pair // n_samples, pair % n_samples
        codes = {n: base[n][sample].repeat(2, 1) for n in generator.layer_names}
        layer_of = torch.bucketize(channel, ends, right=True)
        for li in layer_of.unique().tolist():
            name = names[li]
            rows = (layer_of == li).nonzero().squeeze(1)
            cols = (channel[rows] - starts[li]).to(param.device)
            rows = rows.to(param.device)
            mean, std = values[name][0][cols], values[name][1][cols]
            codes[name][rows, cols] = mean + alpha * std
            codes[name][rows + k, cols] = mean - alpha * std
        images = render_style_codes(generator, codes)
        emb = encode_images(clip_model, images).cpu()
        emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        diff = emb[:k] - emb[k:]
        norm = diff.norm(dim=-1, keepdim=True)
        diff = torch.where(norm > min_change, diff / norm.clamp_min(1e-12), torch.zeros_like(diff))
        if sums is None:
            sums = torch.zeros(n_channels, diff.shape[1], dtype=torch.float64)
        sums.index_add_(0, channel, diff.double())
        done += k
        if progress is not None:
            progress(done, total)
    norm = sums.norm(dim=-1, keepdim=True)
    out = torch.where(norm > 1e-12, sums / norm.clamp_min(1e-300), torch.zeros_like(sums))
    return out.float()


def save_channel_directions(path: str | os.PathLike, delta_i_c: torch.Tensor, layers: Sequence[str],
                            layer_sizes: Sequence[int], extra_metadata: Mapping[str, str] | None = None) -> Path:
    """Write `delta_i_c` [n_channels, D] as safetensors with the row layout (layers and their sizes) as metadata."""
    from safetensors.torch import save_file

    from .io_utils import atomic_path

    if len(layers) != len(layer_sizes) or sum(layer_sizes) != delta_i_c.shape[0] or delta_i_c.ndim != 2:
        raise ValueError(f"delta_i_c {list(delta_i_c.shape)} does not match layers {list(layers)} with sizes "
                         f"{list(layer_sizes)} (their sum must equal the row count)")
    meta = {"format": CHANNEL_DIRECTIONS_FORMAT, "version": FORMAT_VERSION,
            "layers": json.dumps([[n, int(s)] for n, s in zip(layers, layer_sizes)])}
    meta.update({k: str(v) for k, v in (extra_metadata or {}).items()})
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({"delta_i_c": delta_i_c.detach().float().contiguous().cpu()}, str(tmp), metadata=meta)
    return path


def load_channel_directions(path: str | os.PathLike) -> tuple[torch.Tensor, list[str] | None]:
    """Read channel directions: a file from `save_channel_directions`, or the official fs3.npy.

    The .npy is read with `allow_pickle=False`. Returns (delta_i_c [n_channels, D] float32, row layers or None for
    .npy files, whose rows follow the official layout: the non-ToRGB layers in order).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; compute channel directions with "
                                f"compute_channel_directions or use the official fs3.npy")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"{path.name} is not a plain numeric .npy ({e})") from None
        if arr.ndim != 2 or arr.dtype.kind != "f":
            raise ValueError(f"{path.name} holds {arr.dtype} {list(arr.shape)}; expected [n_channels, 512] floats")
        return torch.from_numpy(arr.astype(np.float32)), None
    from safetensors.torch import load_file

    from .io_utils import read_safetensors_metadata

    meta = read_safetensors_metadata(path)
    if meta.get("format") != CHANNEL_DIRECTIONS_FORMAT:
        raise ValueError(f"{path.name} is not a channel-directions file (format {meta.get('format')!r}); write one "
                         f"with save_channel_directions")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path.name} has channel-directions version {meta.get('version')}; this version reads "
                         f"{FORMAT_VERSION}")
    layers = [n for n, _ in json.loads(meta["layers"])]
    return load_file(str(path))["delta_i_c"], layers


__all__ = [
    "FALLBACK_TEMPLATES", "OFFICIAL_EDIT_LAYER_COUNT", "official_layer_names", "is_torgb_layer",
    "styleclip_edit_layers", "style_codes_to_official", "official_to_style_codes", "render_style_codes",
    "read_s_mean_std", "save_s_stats", "load_s_stats", "compute_s_stats", "load_templates", "averaged_text_features",
    "text_direction", "channel_relevance", "threshold_relevance", "channels_to_style_direction", "global_direction",
    "apply_global_direction", "read_clip_state_dict", "load_clip", "convert_clip_to_safetensors",
    "clip_image_preprocess", "encode_images", "sample_w", "compute_channel_directions", "save_channel_directions",
    "load_channel_directions",
]
