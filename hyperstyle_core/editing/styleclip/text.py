"""Prompt templates and CLIP text features: the text direction `delta_i` of a neutral -> target edit.

Each text is formatted with the prompt templates (official: the 79 ImageNet templates of the CLIP paper), embedded
by CLIP's text encoder, each embedding L2-normalised, averaged and renormalised; `delta_i = normalise(t_target -
t_neutral)`. CLIP itself is optional: `import_clip` imports it only when a function needs it.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

CLIP_INSTALL = 'pip install openai-clip "setuptools<81"'

# The official prompt templates live in the official repository's editing/styleclip/global_directions/templates.txt
# (the CLIP paper's ImageNet templates): read them with load_templates(); they are not bundled here.
FALLBACK_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)


def load_templates(path: str | os.PathLike) -> list[str]:
    """Prompt templates, one per line with a `{}` placeholder (blank lines skipped, line ends stripped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass the official templates.txt "
                                f"(editing/styleclip/global_directions/ in the official repository)")
    templates = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    check_templates(templates)
    return templates


def check_templates(templates: Sequence[str]) -> None:
    """Raise ValueError unless `templates` is a non-empty list of strings that each have a `{}` placeholder."""
    if isinstance(templates, str) or not templates:
        raise ValueError("templates must be a non-empty list of strings with a '{}' placeholder, e.g. "
                         "FALLBACK_TEMPLATES")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise ValueError(f"template {bad[0]!r} has no '{{}}' placeholder for the text")


def import_clip():
    """OpenAI's `clip` package (with `clip.model`), or ImportError naming the install command."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # clip imports the deprecated pkg_resources
            # Imported here, not at module level: CLIP is an optional dependency (CLIP_INSTALL) that only the
            # text-encoding and model-building functions need.
            import clip
            import clip.model
    except ImportError as e:
        raise ImportError(f"StyleCLIP needs OpenAI's CLIP package: {CLIP_INSTALL} ({e})") from e
    return clip


def module_device(module: Any) -> torch.device:
    """Device of a module's first parameter (CPU for modules without parameters and for non-modules)."""
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
    check_templates(templates)
    if isinstance(texts, str) or not texts:
        raise ValueError("texts must be a non-empty list of strings")
    if tokenize is None:
        tokenize = import_clip().tokenize
    device = module_device(clip_model)
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


__all__ = ["CLIP_INSTALL", "FALLBACK_TEMPLATES", "load_templates", "check_templates", "import_clip", "module_device",
           "averaged_text_features", "text_direction"]
