"""Every example workflow runs through the node classes in ComfyUI's execution order, widget values mapped onto
INPUT_TYPES the way the frontend does, on recipe weights converted by our converter; the files are the builder's;
the PNGs it saves carry it back to the canvas. (Their layout: tests/test_workflow_layout.py.)"""
from __future__ import annotations

import importlib.util
import inspect
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, SHARED  # noqa: E402

TEMPLATES = REPO / "workflows"        # ComfyUI's template folder for custom node packs (the design card's)
WORKFLOWS = sorted(TEMPLATES.glob("*.json"))
WIDGET_TYPES = {"INT", "FLOAT", "BOOLEAN", "STRING"}
VIRTUAL_TYPES = {"Note", "MarkdownNote"}      # frontend-only nodes: never sent to the server
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
        if node["type"] in VIRTUAL_TYPES:
            continue
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


def api_prompt(prompt: dict) -> dict:
    """The API form ComfyUI hands to nodes as the hidden PROMPT input: {"id": {"class_type", "inputs"}}."""
    return {str(nid): {"class_type": node_type,
                       "inputs": {k: ([str(v[0]), v[1]] if isinstance(v, tuple) else v) for k, v in inputs.items()}}
            for nid, (node_type, inputs) in prompt.items()}


def hidden_inputs(cls, nid: int, workflow: dict, prompt: dict) -> dict:
    """What ComfyUI's executor fills in for a node's hidden inputs (the frontend sends the graph as
    extra_data.extra_pnginfo.workflow)."""
    values = {"PROMPT": api_prompt(prompt), "EXTRA_PNGINFO": {"workflow": workflow}, "UNIQUE_ID": str(nid)}
    return {name: values[kind] for name, kind in (cls.INPUT_TYPES().get("hidden") or {}).items() if kind in values}


def run_workflow(path: Path, classes: dict) -> dict:
    workflow = json.loads(path.read_text())
    prompt = to_prompt(workflow, classes)
    validate(prompt, classes)
    results = {}
    for nid in execution_order(prompt):
        node_type, inputs = prompt[nid]
        cls = classes[node_type]
        kwargs = {k: (results[v[0]][v[1]] if isinstance(v, tuple) else v) for k, v in inputs.items()}
        if hasattr(cls, "VALIDATE_INPUTS"):
            wanted = inspect.signature(cls.VALIDATE_INPUTS).parameters
            verdict = cls.VALIDATE_INPUTS(**{k: v for k, v in kwargs.items() if k in wanted})
            assert verdict is True, f"node {nid} ({node_type}): {verdict}"
        kwargs.update(hidden_inputs(cls, nid, workflow, prompt))
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
@pytest.mark.slow
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
        animations = list((Path(os.environ["HYPERSTYLE_OUTPUT_DIR"]) / "HyperStyle")
                          .glob("age_sweep_*.webp"))
        assert len(animations) == 1
        with Image.open(animations[0]) as im:
            assert im.n_frames == 5
    if path.stem == "hyperstyle_batch":
        saved = [im for p, im in _Sink.collected if p == "HyperStyle/batch"][0]
        assert saved.shape[0] == 3
    if path.stem == "hyperstyle_folder":     # every photo saved under its own name (car_image: no face, unchanged)
        saved = Path(os.environ["HYPERSTYLE_OUTPUT_DIR"]) / "HyperStyle" / "folder"
        assert sorted(p.name for p in saved.iterdir()) == [Path(n).stem + "_pasted.png" for n in FOLDER_PHOTOS]
        for png in saved.iterdir():                          # each carries the graph it came from
            assert json.loads(frontend_png_text(png.read_bytes())["workflow"]) == json.loads(path.read_text())


def test_workflow_model_names_are_the_documented_ones():
    readme = (REPO / "models" / "README.md").read_text() + (REPO / "README.md").read_text()
    for path in WORKFLOWS:
        for node in json.loads(path.read_text())["nodes"]:
            for value in node.get("widgets_values") or []:
                if isinstance(value, str) and value.endswith(".safetensors"):
                    assert value in readme, f"{path.name} uses {value}, which the README never tells users to create"


# ---------------------------------------------------------------- the files are the builder's
def _builder():
    if "build_workflows" in sys.modules:
        return sys.modules["build_workflows"]
    spec = importlib.util.spec_from_file_location("build_workflows", REPO / "tools" / "build_workflows.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_workflows"] = module        # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def test_the_workflow_files_are_what_the_builder_writes(pack):
    builder = _builder()
    assert sorted(builder.WORKFLOWS) == [p.name for p in WORKFLOWS]
    for path in WORKFLOWS:
        assert json.loads(path.read_text()) == builder.WORKFLOWS[path.name](), \
            f"{path.name} differs from tools/build_workflows.py: run python tools/build_workflows.py"


def test_templates_are_listed_once():
    """ComfyUI serves a pack's templates from each of these folders; a second copy would list every one twice."""
    for folder in ("example", "examples", "workflow", "example_workflows"):
        assert not list((REPO / folder).glob("*.json")), f"{folder}/ holds workflows: keep them in workflows/"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_every_template_has_a_readable_thumbnail(path):
    """The template browser asks for <name>.jpg beside each workflow (a 404 gives a placeholder)."""
    thumb = path.with_suffix(".jpg")
    assert thumb.is_file(), f"{thumb.name} missing: python tools/workflow_pictures.py SHOTS"
    with Image.open(thumb) as im:
        assert im.format == "JPEG" and 320 <= im.width <= 1024 and 200 <= im.height <= 768
    assert thumb.stat().st_size < 150_000


# ---------------------------------------------------------------- saved PNGs carry the workflow back
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def frontend_png_text(data: bytes) -> dict[str, str]:
    """The ComfyUI frontend's reader of dropped PNGs (getFromPngBuffer in its scripts/metadata/png), in Python:
    tEXt / iTXt / comf chunks, keyword up to the first NUL, the rest decoded as UTF-8. ComfyUI's Python side has no
    reader; the frontend then JSON.parses the "workflow" entry and loads it as the graph."""
    assert data[:8] == PNG_SIGNATURE
    found, offset = {}, 8
    while offset < len(data):
        length = int.from_bytes(data[offset:offset + 4], "big")
        kind = data[offset + 4:offset + 8].decode("latin-1")
        if kind in ("tEXt", "comf", "iTXt"):
            start = offset + 8
            end = data.index(b"\0", start)
            found[data[start:end].decode("latin-1")] = data[end + 1:start + length].decode("utf-8")
        offset += 12 + length
    return found


def test_saved_pngs_restore_their_workflow(pack, tmp_path, monkeypatch):
    """Dragging a saved PNG onto the canvas restores the graph: Save Images Named embeds the workflow and the prompt
    (hidden inputs EXTRA_PNGINFO / PROMPT, as core SaveImage does) and both read back unchanged."""
    monkeypatch.setenv("HYPERSTYLE_OUTPUT_DIR", str(tmp_path))
    classes = {**pack.NODE_CLASS_MAPPINGS, **CORE_NODES}
    workflow = json.loads((TEMPLATES / "hyperstyle_folder.json").read_text())
    prompt = to_prompt(workflow, classes)
    save = classes["HyperStyleSaveImagesNamed"]
    assert save.INPUT_TYPES()["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    images = torch.rand(2, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    save().execute(images, "a.jpg\nb.png", "HyperStyle/folder", "_pasted",
                   **hidden_inputs(save, 9, workflow, prompt))
    saved = sorted((tmp_path / "HyperStyle" / "folder").glob("*.png"))
    assert [p.name for p in saved] == ["a_pasted.png", "b_pasted.png"]
    for png in saved:
        chunks = frontend_png_text(png.read_bytes())
        restored = json.loads(chunks["workflow"])
        assert restored == workflow
        assert json.loads(chunks["prompt"]) == api_prompt(prompt)
        with Image.open(png) as im:                       # PIL (what Python tools read) agrees
            assert json.loads(im.text["workflow"]) == workflow
        assert to_prompt(restored, classes) == prompt     # the restored graph runs the same
