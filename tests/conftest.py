"""Shared test fixtures: the ../shared folder, recipe-built official checkpoints converted by our converter."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HYPERSTYLE_SHARED", REPO.parent / "shared"))
OFFICIAL = SHARED / "fixtures" / "official"
MANIFESTS = OFFICIAL / "manifests"
# Where the parity tests run the models: cpu here and in CI; cuda on a GPU machine (tools/device_check.sh).
TEST_DEVICE = os.environ.get("HYPERSTYLE_TEST_DEVICE", "cpu")

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Parallel test workers share the cores: torch's default (one thread per core in every worker) oversubscribes
    # them, which was several times slower than one thread per worker.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))


# Session fixtures that build the recipe models at the official widths (the 256-px HyperStyle model alone is 1.1 GB):
# every test that asks for one is `slow`, so the everyday subset (-m "not slow") builds none of them.
OFFICIAL_SIZE_FIXTURES = frozenset({"models_256", "models_dir", "loss_models"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if OFFICIAL_SIZE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


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
    """Builds an official-format .pt for a manifest kind on first use.

    Converts it, deletes the .pt, caches the result.
    """

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


# The loss networks' files as the official repositories release them (issue 12): name -> manifest kind.
LOSS_FILES = {"ir_se50": "model_ir_se50.pth", "alexnet": "alexnet-owt-7be5be79.pth", "lpips_alex_lin": "alex.pth",
              "moco_v2": "moco_v2_800ep_pretrain.pt"}


def original_loss_checkpoint(recipe, kind: str) -> dict:
    """A loss network's recipe weights in its released layout (AlexNet without the classifier the losses never use;
    MoCo with the key encoder and queue its file also holds, which conversion drops)."""
    manifest = json.loads((MANIFESTS / f"{kind}.json").read_text())
    entries = [e for c in manifest["containers"].values() for e in c if not e["key"].startswith("classifier.")]
    sd = {e["key"]: recipe.make_tensor(e) for e in entries}
    if kind == "moco_v2":
        sd["module.encoder_k.conv1.weight"] = torch.zeros(64, 3, 7, 7)
        sd["module.queue"] = torch.zeros(128, 16)
        return {"state_dict": sd, "epoch": 800, "arch": "resnet50"}
    return sd


@pytest.fixture(scope="session")
def loss_models(recipe, tmp_path_factory) -> Path:
    """A models folder with the four loss networks, converted from recipe files in their released layouts."""
    from hyperstyle_core import convert
    src, models = tmp_path_factory.mktemp("loss_sources"), tmp_path_factory.mktemp("loss_models")
    for kind, name in LOSS_FILES.items():
        torch.save(original_loss_checkpoint(recipe, kind), src / name)
        convert(src / name, models)
        (src / name).unlink()
    return models


@pytest.fixture(scope="session")
def expected_256():
    from safetensors.torch import load_file
    return load_file(str(OFFICIAL / "expected_256.safetensors"))


@pytest.fixture(scope="session")
def models_256(converted):
    from hyperstyle_core import load
    hs = load(converted("hyperstyle_ffhq_256"), device=TEST_DEVICE)
    we = load(converted("faces_w_encoder_256"), device=TEST_DEVICE)
    return hs, we


# ---------------------------------------------------------------------------------------------- node pack

PACK_NAME = "hyperstyle_pack"


def import_pack():
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(PACK_NAME, REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pack():
    return import_pack()


# official name -> (manifest kind, salt)
MODEL_FILES = {
    "hyperstyle_ffhq.safetensors": ("hyperstyle_ffhq_256", None),
    "faces_w_encoder.safetensors": ("faces_w_encoder_256", None),
    "stylegan2-ffhq-config-f.safetensors": ("stylegan2_256", None),
    "toonify.safetensors": ("stylegan2_256", "toonify"),
    "restyle_e4e_ffhq_encode.safetensors": ("restyle_e4e_ffhq_256", None),
}
DIRECTION_FILES = ("age", "smile")


@pytest.fixture(scope="session")
def models_dir(converted, tmp_path_factory):
    """A hyperstyle model folder as a user would have it (recipe weights at the 256 test size)."""
    from hyperstyle_core import convert
    folder = tmp_path_factory.mktemp("models_hyperstyle")
    for name, (kind, salt) in MODEL_FILES.items():
        src = converted(kind, salt=salt, name=f"{kind}_{salt}" if salt else None)
        target = folder / name
        try:
            target.hardlink_to(src)
        except OSError:
            shutil.copy(src, target)
    for d in DIRECTION_FILES:
        convert(SHARED / "data" / "official" / "editing" / "interfacegan" / f"{d}.pt", folder)
    return folder


@pytest.fixture()
def comfy_env(models_dir, tmp_path, monkeypatch):
    """Point the pack's ComfyUI stand-ins at the test models and a fresh output folder."""
    monkeypatch.setenv("HYPERSTYLE_MODEL_DIRS", str(models_dir))
    monkeypatch.setenv("HYPERSTYLE_OUTPUT_DIR", str(tmp_path / "output"))
    monkeypatch.setenv("HYPERSTYLE_DEVICE", "cpu")
    return tmp_path
