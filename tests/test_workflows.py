"""Every workflow file runs through the node classes in ComfyUI's execution order, widget values mapped onto
INPUT_TYPES the way the frontend does, on recipe weights converted by our converter."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, SHARED  # noqa: E402

WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
WIDGET_TYPES = {"INT", "FLOAT", "BOOLEAN", "STRING"}
PHOTOS = SHARED / "data" / "photos"


# ---------------------------------------------------------------- stand-ins for the ComfyUI core nodes used
class LoadImage:
    RETURN_TYPES = ("IMAGE", "MASK")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": (sorted(p.name for p in PHOTOS.iterdir()), {"image_upload": True})}}

    def execute(self, image):
        arr = np.asarray(Image.open(PHOTOS / image).convert("RGB"), dtype=np.float32) / 255.0
        t = torch.from_numpy(arr)[None]
        return (t, torch.zeros(t.shape[:3]))


class ImageBatch:
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image1": ("IMAGE",), "image2": ("IMAGE",)}}

    def execute(self, image1, image2):
        if image1.shape[1:] != image2.shape[1:]:
            image2 = torch.nn.functional.interpolate(image2.movedim(-1, 1), size=image1.shape[1:3],
                                                     mode="bilinear").movedim(1, -1)
        return (torch.cat([image1, image2]),)


class _Sink:
    RETURN_TYPES = ()
    collected: list = []

    def execute(self, images, filename_prefix=None):
        _Sink.collected.append((filename_prefix, images))
        return ()


class SaveImage(_Sink):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"})}}


class PreviewImage(_Sink):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}


CORE_NODES = {"LoadImage": LoadImage, "ImageBatch": ImageBatch, "SaveImage": SaveImage, "PreviewImage": PreviewImage}


# ---------------------------------------------------------------- the frontend's graph -> prompt, and execution
def widget_names(cls) -> list[str | None]:
    names: list[str | None] = []
    types = cls.INPUT_TYPES()
    upload = False
    for section in ("required", "optional"):
        for name, spec in (types.get(section) or {}).items():
            kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
            if opts.get("forceInput") or not (isinstance(kind, list) or kind in WIDGET_TYPES):
                continue
            names.append(name)
            if opts.get("image_upload"):
                upload = True
        if upload and section == "required":
            names.append(None)
            upload = False
    return names


def to_prompt(workflow: dict, classes: dict) -> dict:
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        cls = classes[node["type"]]
        names = widget_names(cls)
        values = node.get("widgets_values") or []
        assert len(values) == len(names), f"node {node['id']} ({node['type']}): {len(values)} widget values, " \
                                          f"{len(names)} widgets"
        inputs = {n: v for n, v in zip(names, values) if n is not None}
        for inp in node.get("inputs") or []:
            if inp.get("link") is not None:
                _, src, slot, _, _, link_type = links[inp["link"]]
                inputs[inp["name"]] = (src, slot, link_type)
        prompt[node["id"]] = (node["type"], inputs)
    return prompt


def validate(prompt: dict, classes: dict) -> None:
    """What /prompt checks: socket types match exactly, combo values are among the options, numbers in range."""
    for nid, (node_type, inputs) in prompt.items():
        cls = classes[node_type]
        spec = {**cls.INPUT_TYPES().get("required", {}), **cls.INPUT_TYPES().get("optional", {})}
        for name in cls.INPUT_TYPES().get("required", {}):
            assert name in inputs, f"node {nid} ({node_type}) lacks required input {name}"
        for name, value in inputs.items():
            kind, opts = spec[name][0], (spec[name][1] if len(spec[name]) > 1 else {})
            if isinstance(value, tuple):
                src_type = classes[prompt[value[0]][0]].RETURN_TYPES[value[1]]
                assert src_type == kind == value[2], f"node {nid} input {name}: {src_type} -> {kind}"
            elif isinstance(kind, list):
                assert value in kind, f"node {nid} ({node_type}) {name}={value!r} not in {kind}"
            elif kind in ("INT", "FLOAT"):
                assert opts.get("min", -1e18) <= value <= opts.get("max", 1e18), f"node {nid} {name}={value}"


def execution_order(prompt: dict) -> list[int]:
    order, done = [], set()

    def visit(nid):
        if nid in done:
            return
        for value in prompt[nid][1].values():
            if isinstance(value, tuple):
                visit(value[0])
        done.add(nid)
        order.append(nid)
    for nid in sorted(prompt):
        visit(nid)
    return order


def run_workflow(path: Path, classes: dict) -> dict:
    prompt = to_prompt(json.loads(path.read_text()), classes)
    validate(prompt, classes)
    results = {}
    for nid in execution_order(prompt):
        node_type, inputs = prompt[nid]
        cls = classes[node_type]
        kwargs = {k: (results[v[0]][v[1]] if isinstance(v, tuple) else v) for k, v in inputs.items()}
        if hasattr(cls, "VALIDATE_INPUTS"):
            import inspect
            wanted = inspect.signature(cls.VALIDATE_INPUTS).parameters
            verdict = cls.VALIDATE_INPUTS(**{k: v for k, v in kwargs.items() if k in wanted})
            assert verdict is True, f"node {nid} ({node_type}): {verdict}"
        out = getattr(cls(), cls.FUNCTION if hasattr(cls, "FUNCTION") else "execute")(**kwargs)
        results[nid] = out["result"] if isinstance(out, dict) else out
    return results


FOLDER_PHOTOS = ("aligned_bezos.jpg", "car_image.jpg", "face_image.jpg")   # the input folder of hyperstyle_folder


@pytest.fixture()
def classes(pack, comfy_env, monkeypatch):
    inputs = comfy_env / "input"
    inputs.mkdir()
    for name in FOLDER_PHOTOS:
        (inputs / name).symlink_to(PHOTOS / name)
    monkeypatch.setenv("HYPERSTYLE_INPUT_DIR", str(inputs))
    return {**pack.NODE_CLASS_MAPPINGS, **CORE_NODES}


def test_the_documented_workflows_exist():
    assert {p.name for p in WORKFLOWS} >= {"hyperstyle_batch.json", "hyperstyle_invert_edit.json",
                                           "hyperstyle_edit_sweep.json", "hyperstyle_toonify.json",
                                           "hyperstyle_folder.json"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_runs(path, classes):
    _Sink.collected = []
    run_workflow(path, classes)
    assert _Sink.collected, "workflow produced no images"
    for prefix, images in _Sink.collected:
        assert images.ndim == 4 and images.shape[-1] == 3 and images.dtype == torch.float32
        assert 0.0 <= images.min() and images.max() <= 1.0
        assert torch.isfinite(images).all()
    if path.stem == "hyperstyle_invert_edit":
        photo = np.asarray(Image.open(PHOTOS / "face_image.jpg").convert("RGB"))
        saved = {p: im for p, im in _Sink.collected if p}
        assert set(saved) == {"HyperStyle/age", "HyperStyle/smile"}
        for im in saved.values():   # pasted back at the photo's own size
            assert im.shape[1:3] == photo.shape[:2]
        assert not torch.equal(saved["HyperStyle/age"], saved["HyperStyle/smile"])
    if path.stem == "hyperstyle_edit_sweep":
        pasted = [im for p, im in _Sink.collected if p == "HyperStyle/age_sweep_pasted"][0]
        assert pasted.shape[0] == 5                                   # one composite per sweep factor
        animations = list((Path(__import__("os").environ["HYPERSTYLE_OUTPUT_DIR"]) / "HyperStyle")
                          .glob("age_sweep_*.webp"))
        assert len(animations) == 1
        with Image.open(animations[0]) as im:
            assert im.n_frames == 5
    if path.stem == "hyperstyle_batch":
        saved = [im for p, im in _Sink.collected if p == "HyperStyle/batch"][0]
        assert saved.shape[0] == 3
    if path.stem == "hyperstyle_folder":     # every photo saved under its own name (car_image: no face, unchanged)
        saved = Path(__import__("os").environ["HYPERSTYLE_OUTPUT_DIR"]) / "hyperstyle_folder"
        assert sorted(p.name for p in saved.iterdir()) == [Path(n).stem + "_pasted.png" for n in FOLDER_PHOTOS]


def test_workflow_model_names_are_the_documented_ones():
    readme = (REPO / "models" / "README.md").read_text() + (REPO / "README.md").read_text()
    for path in WORKFLOWS:
        for node in json.loads(path.read_text())["nodes"]:
            for value in node.get("widgets_values") or []:
                if isinstance(value, str) and value.endswith(".safetensors"):
                    assert value in readme, f"{path.name} uses {value}, which the README never tells users to create"
