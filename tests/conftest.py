"""Shared test fixtures: the ../shared folder, recipe-built official checkpoints converted by our converter."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HYPERSTYLE_SHARED", REPO.parent / "shared"))
OFFICIAL = SHARED / "fixtures" / "official"
MANIFESTS = OFFICIAL / "manifests"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _load_recipe():
    path = OFFICIAL / "recipe.py"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: the tests need ../shared beside the repo (or HYPERSTYLE_SHARED)")
    spec = importlib.util.spec_from_file_location("hyperstyle_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def recipe():
    return _load_recipe()


class ConvertedKinds:
    """Builds an official-format .pt for a manifest kind on first use, converts it, deletes the .pt, caches the result."""

    def __init__(self, recipe, folder: Path):
        self.recipe, self.folder, self._done = recipe, folder, {}

    def pt(self, kind: str, salt: str | None = None, name: str | None = None) -> Path:
        path = self.folder / f"{name or kind}.pt"
        if not path.exists():
            torch.save(self.recipe.make_checkpoint(MANIFESTS / f"{kind}.json", salt), path)
        return path

    def __call__(self, kind: str, salt: str | None = None, name: str | None = None) -> Path:
        key = (kind, salt, name)
        if key not in self._done:
            from hyperstyle_core import convert
            src = self.pt(kind, salt, name)
            self._done[key] = convert(src, self.folder / "converted")
            src.unlink()
        return self._done[key]


@pytest.fixture(scope="session")
def converted(recipe, tmp_path_factory):
    return ConvertedKinds(recipe, tmp_path_factory.mktemp("official"))


@pytest.fixture(scope="session")
def expected_256():
    from safetensors.torch import load_file
    return load_file(str(OFFICIAL / "expected_256.safetensors"))


@pytest.fixture(scope="session")
def models_256(converted):
    from hyperstyle_core import load
    hs = load(converted("hyperstyle_ffhq_256"), device="cpu")
    we = load(converted("faces_w_encoder_256"), device="cpu")
    return hs, we
