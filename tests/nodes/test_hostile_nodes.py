"""Hostile names in the nodes: filename prefixes that would leave ComfyUI's output folder, and file picks that would
leave the model or output folders. ComfyUI absent (its stand-ins), plus a check against a real ComfyUI checkout's
folder_paths when one is beside the repo (or named by $HYPERSTYLE_COMFYUI)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, SHARED

DIRECTIONS = SHARED / "data" / "official" / "editing" / "interfacegan"
COMFYUI = Path(os.environ.get("HYPERSTYLE_COMFYUI", REPO.parent / "comfy" / "ComfyUI"))

# Each of these would write outside the output folder, or into a name made only of dots.
HOSTILE_PREFIXES = [".", "..", "../x", "/abs", "a/../../b", "x/..", "a/./b", "..\\x", "\\abs", "C:/x", "a\x00b",
                    "a\nb"]
SAVE_NODES = {
    "HyperStyleSaveDeltas": "HyperStyle Save Deltas",
    "HyperStyleSaveLatent": "HyperStyle Save Latent",
    "HyperStyleSaveAnimation": "HyperStyle Save Animation",
    "HyperStyleComputeStyleCLIPDirections": "HyperStyle Compute StyleCLIP Directions",
    "HyperStyleComputeGanSpace": "HyperStyle Compute GANSpace",
    "HyperStyleFitDirection": "HyperStyle Fit Direction",
}


@pytest.fixture()
def env(pack, tmp_path, monkeypatch):
    """Empty model folder and output folder (tmp/comfy/output: an escape would land in tmp/comfy)."""
    (tmp_path / "models").mkdir()
    monkeypatch.setenv("HYPERSTYLE_MODEL_DIRS", str(tmp_path / "models"))
    monkeypatch.setenv("HYPERSTYLE_OUTPUT_DIR", str(tmp_path / "comfy" / "output"))
    monkeypatch.setenv("HYPERSTYLE_DEVICE", "cpu")
    return tmp_path


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def _save(pack, node_id: str, prefix: str):
    """Run a save node with small valid inputs (the prefix is checked before they are used)."""
    from hyperstyle_pack.hyperstyle_core.deltas import GeneratorSignature, WeightDeltas
    from hyperstyle_pack.hyperstyle_core.testing import tiny_generator, tiny_generator_config
    node = pack.NODE_CLASS_MAPPINGS[node_id]()
    if node_id == "HyperStyleSaveDeltas":
        signature = GeneratorSignature.of(tiny_generator_config())
        name, out, inp, k = signature.layers[0]
        return node.execute(WeightDeltas({name: torch.zeros(1, out, inp, k, k)}, signature), prefix)
    if node_id == "HyperStyleSaveLatent":
        return node.execute(torch.zeros(1, 10, 64), prefix)
    if node_id == "HyperStyleSaveAnimation":
        return node.execute(torch.rand(2, 8, 8, 3), prefix, format="gif")
    if node_id == "HyperStyleComputeGanSpace":
        return node.execute(tiny_generator(), 16, 4, 0, prefix)       # refused before the generator is used
    if node_id == "HyperStyleFitDirection":
        return node.execute(torch.randn(4, 10, 64), "0,1,0,1", "svm", prefix)
    return node.execute(tiny_generator(), "ViT-B-32.pt", 2, prefix)     # refused before CLIP is looked for


@pytest.mark.parametrize("node_id", list(SAVE_NODES))
def test_save_nodes_refuse_prefixes_that_leave_the_output_folder(pack, env, node_id):
    cls = pack.NODE_CLASS_MAPPINGS[node_id]
    before = _files(env)
    for prefix in HOSTILE_PREFIXES:
        message = rf"^{SAVE_NODES[node_id]}: filename_prefix .* must stay inside ComfyUI's output folder"
        with pytest.raises(ValueError, match=message):
            _save(pack, node_id, prefix)
        verdict = cls.VALIDATE_INPUTS(filename_prefix=prefix)      # the graph fails before any node runs
        assert verdict is not True and verdict.startswith(f"{SAVE_NODES[node_id]}: filename_prefix {prefix!r}")
    assert _files(env) == before        # nothing written, inside or outside the output folder
    assert cls.VALIDATE_INPUTS(filename_prefix="hyperstyle/ok") is True
    assert cls.VALIDATE_INPUTS() is True        # a linked prefix is only known at run time


def test_refusals_say_what_is_wrong(pack, env):
    save = pack.NODE_CLASS_MAPPINGS["HyperStyleSaveLatent"].VALIDATE_INPUTS
    assert "has '.' or '..' parts" in save(filename_prefix="..")
    assert "is an absolute path" in save(filename_prefix="/tmp/x")
    assert "is an absolute path" in save(filename_prefix="C:\\x")
    assert "contains control characters" in save(filename_prefix="a\x00b")
    assert "needs a file name" in save(filename_prefix="hyperstyle/")


def test_ordinary_prefixes_still_save_inside_the_output_folder(pack, env):
    output = env / "comfy" / "output"
    for node_id in ("HyperStyleSaveDeltas", "HyperStyleSaveLatent", "HyperStyleSaveAnimation"):
        path = Path(_save(pack, node_id, f"hyperstyle/{node_id} a.b")["result"][0])
        assert path.is_file() and path.parent == output / "hyperstyle"
        assert path.name.startswith(f"{node_id} a.b_00001_")


def test_comfyui_refusal_ends_in_a_clear_message(pack, env, monkeypatch):
    """In ComfyUI, get_save_image_path raises a bare multi-line Exception for an escaping prefix; the node reports
    it as one line naming the node."""
    from hyperstyle_pack.nodes import _comfy

    class FolderPaths:
        @staticmethod
        def get_output_directory():
            return str(env / "comfy" / "output")

        @staticmethod
        def get_save_image_path(filename_prefix, output_dir):
            raise Exception("**** ERROR: Saving image outside the output folder is not allowed.\n "
                            f"full_output_folder: /elsewhere\n         output_dir: {output_dir}")
    monkeypatch.setattr(_comfy, "IN_COMFY", True)
    monkeypatch.setattr(_comfy, "folder_paths", FolderPaths)
    with pytest.raises(ValueError) as info:
        _save(pack, "HyperStyleSaveLatent", "hyperstyle/x")
    message = str(info.value)
    assert message.startswith("HyperStyle Save Latent: filename_prefix 'hyperstyle/x' must stay inside ComfyUI's "
                              "output folder") and "(Saving image outside the output folder is not allowed.)" in message
    assert "\n" not in message and "****" not in message


_REAL_COMFYUI_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, os.path.join(sys.argv[1], "tests"))
from conftest import import_pack
import_pack()                                   # before ComfyUI is importable: the pack uses its stand-ins
sys.path.insert(0, sys.argv[2])
import folder_paths                             # the real ComfyUI module
from hyperstyle_pack.nodes import _comfy
out = os.path.abspath(sys.argv[3])
os.makedirs(out)
folder_paths.set_output_directory(out)
prefixes = json.loads(sys.argv[4])

def outcome(function, *args):
    try:
        folder, name, counter, subfolder, _ = function(*args)
        return [os.path.abspath(folder), name, counter, subfolder]
    except Exception as e:
        return type(e).__name__

result = {"standin": {p: outcome(_comfy._save_image_path_standin, p, out) for p in prefixes},
          "real": {p: outcome(folder_paths.get_save_image_path, p, out) for p in prefixes}}
_comfy.IN_COMFY, _comfy.folder_paths = True, folder_paths
nodes = {}
for p in prefixes + ["hyperstyle/ok"]:
    try:
        nodes[p] = str(_comfy.save_path(p, ".safetensors", "Node")[0])
    except ValueError as e:
        nodes[p] = "ValueError: " + str(e)
result["nodes"] = nodes
print(json.dumps(result))
"""


@pytest.mark.skipif(not (COMFYUI / "folder_paths.py").is_file(),
                    reason=f"no ComfyUI checkout at {COMFYUI} (set HYPERSTYLE_COMFYUI)")
def test_against_real_comfyui_folder_paths(tmp_path):
    """The stand-in refuses what ComfyUI's get_save_image_path refuses (and names files the same way); with the
    real function in place the nodes refuse every hostile prefix with a clear ValueError."""
    prefixes = ["../x", "/abs", "a/../../b", "..", ".", "x/..", "hyperstyle/name"]
    run = subprocess.run([sys.executable, "-c", _REAL_COMFYUI_SCRIPT, str(REPO), str(COMFYUI),
                          str(tmp_path / "output"), json.dumps(prefixes)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    def refused_or_named(outcomes):
        return {prefix: "refused" if isinstance(o, str) else o for prefix, o in outcomes.items()}
    assert refused_or_named(result["standin"]) == refused_or_named(result["real"])
    assert result["standin"]["../x"] == "ValueError"
    assert result["real"]["../x"] == "Exception"        # ComfyUI's own refusal is a bare Exception
    for prefix in prefixes[:-1]:
        assert result["nodes"][prefix].startswith(f"ValueError: Node: filename_prefix {prefix!r}"), result["nodes"]
    assert result["nodes"]["hyperstyle/ok"] == str(tmp_path / "output" / "hyperstyle" / "ok_00001_.safetensors")


def test_model_pickers_refuse_names_that_leave_the_model_folders(pack, env):
    from hyperstyle_pack.hyperstyle_core.io.convert import convert
    outside = convert(DIRECTIONS / "age.pt", env / "elsewhere")       # a real file outside the model folders
    inside = convert(DIRECTIONS / "age.pt", env / "models" / "sub")
    load_direction = pack.NODE_CLASS_MAPPINGS["HyperStyleLoadDirection"]
    names = [str(outside), os.path.relpath(outside, env / "models"), "../../etc/x.safetensors", "/etc/passwd",
             "sub/../../elsewhere/age.safetensors", "..\\elsewhere\\age.safetensors", "../x.pt"]
    for name in names:
        verdict = load_direction.VALIDATE_INPUTS(name)
        assert verdict is not True and verdict.startswith(f"Model file {name!r} "), verdict
        assert "is an absolute path" in verdict or "has '.' or '..' parts" in verdict
        with pytest.raises(ValueError, match=r"^Model file .*; choose a file from the list \(names are relative to "
                                             r"the hyperstyle model folders\)"):
            load_direction().execute(name)
    # Other nodes that pick from the model folders go through the same lookup.
    from hyperstyle_pack.hyperstyle_core.testing import tiny_generator
    with pytest.raises(ValueError, match=r"Model file '\.\./x\.pt' has '\.' or '\.\.' parts"):
        pack.NODE_CLASS_MAPPINGS["HyperStyleStyleCLIPEdit"]().execute(tiny_generator(), torch.zeros(1, 10, 32),
                                                                       "../x.pt", "s.safetensors", "fs3.safetensors",
                                                                       "a", "b")
    with pytest.raises(ValueError, match=r"Model file '/etc/passwd' is an absolute path"):
        pack.NODE_CLASS_MAPPINGS["HyperStyleLoadGanSpace"]().execute("/etc/passwd")
    # A file inside, in a sub-folder too, still loads.
    assert load_direction.VALIDATE_INPUTS("sub/age.safetensors") is True
    (direction,) = load_direction().execute("sub/age.safetensors")
    assert direction.vector.shape == (1, 512) and inside.is_file()


def test_output_pickers_refuse_names_that_leave_the_output_folder(pack, env):
    from hyperstyle_pack.hyperstyle_core.io.latents import save_latent
    secret = save_latent(env / "comfy" / "secret.safetensors", torch.zeros(1, 10, 64))    # beside the output folder
    load_latent = pack.NODE_CLASS_MAPPINGS["HyperStyleLoadLatent"]()
    load_deltas = pack.NODE_CLASS_MAPPINGS["HyperStyleLoadDeltas"]()
    with pytest.raises(ValueError, match=r"^HyperStyle Load Latent: file '\.\./secret\.safetensors' has '\.' or "
                                         r"'\.\.' parts; choose a file from the list"):
        load_latent.execute("../secret.safetensors")
    with pytest.raises(ValueError, match=r"^HyperStyle Load Latent: file '/.*secret\.safetensors' is an absolute"):
        load_latent.execute(str(secret))
    with pytest.raises(ValueError, match=r"^HyperStyle Load Deltas: file '\.\./secret\.safetensors' has"):
        load_deltas.execute("../secret.safetensors")
    with pytest.raises(FileNotFoundError, match=r"HyperStyle Load Latent: 'nope\.safetensors' is not in ComfyUI's "
                                                r"output folder"):
        load_latent.execute("nope.safetensors")
    saved = _save(pack, "HyperStyleSaveLatent", "hyperstyle/l")["result"][0]
    (latent,) = load_latent.execute(Path(saved).relative_to(env / "comfy" / "output").as_posix())
    assert latent.shape == (1, 10, 64)
