"""Writes the example workflows in workflows/ (ComfyUI's template folder) from compact descriptions.

    python tools/build_workflows.py                  # the workflow .json files
    python tools/workflow_pictures.py SHOTS          # then their thumbnails and the README's docs/*.jpg, from
                                                     # comfy_accept.py --browser --screenshots SHOTS

Each node is Node(id, type, widget values, {input name: (source id, source slot)}, title). Widget values follow the
order the ComfyUI frontend builds from INPUT_TYPES (required, then optional; LoadImage adds its 'upload' widget
value). The layout is a row of columns; a column stacks steps (ComfyUI groups) top to bottom and a step holds one or
more sub-columns of nodes. Node heights follow the frontend's own minimum (LiteGraph computeSize), so the frontend
never grows a node into its neighbour, and the whole graph stays small enough that fit-view lands at a readable zoom.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "workflows"
PACK_MODULE = "hyperstyle_pack"             # the name tests/conftest.py imports the pack under

# ComfyUI core nodes the workflows use: socket inputs (in INPUT_TYPES order) and outputs.
CORE = {
    "LoadImage": ({}, [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "ImageBatch": ({"image1": "IMAGE", "image2": "IMAGE"}, [("IMAGE", "IMAGE")]),
    "PreviewImage": ({"images": "IMAGE"}, []),
    "SaveImage": ({"images": "IMAGE"}, []),
}

# LiteGraph geometry as the ComfyUI frontend (1.35) draws it: a title bar above node.pos, 20 px per socket row,
# 24 px per widget row; fit-view zooms to 0.75 x window / graph size, and below ~0.57 zoom nodes lose their text.
TITLE_H, SLOT_H, WIDGET_H = 30, 20, 24
GROUP_TITLE_H, GROUP_PAD = 34, 10          # group title bar (font 24 x 1.4) and the margin around its nodes
NODE_GAP, COLUMN_GAP = 20, 40              # between nodes of a step; between steps (group edge to group edge: 20)
MAX_CANVAS = (1600, 1000)                  # whole graph, groups included: fit-view of a 1600x1000 window >= 0.75
# Body heights that leave room for the pictures: LoadImage's own minimum is ~326, and after a run the frontend adds
# an image preview (220 px minimum) under the widgets of nodes that return images.
IMAGE_NODES = {"LoadImage": 330, "PreviewImage": 260, "SaveImage": 290, "HyperStyleSaveAnimation": 300,
               "HyperStyleSaveImagesNamed": 330}
NOTE_COLORS = {"color": "#432", "bgcolor": "#653"}                         # the frontend's yellow note
WIDE = 290                                 # loaders: wide enough to show the whole file name

# Group colours from the frontend's palette (LGraphCanvas.node_colors[...].groupcolor), one per kind of step.
STEP_COLORS = {"align": "#3f789e", "invert": "#a1309b", "edit": "#b58b2a", "paste": "#8AA", "save": "#8A8"}


@dataclass
class Node:
    id: int
    type: str
    widgets: list
    links: dict[str, tuple[int, int]] = field(default_factory=dict)   # input name -> (source id, source slot)
    title: str | None = None                                           # shown instead of the display name
    width: int = 230


@dataclass
class Step:
    """A ComfyUI group: a title and sub-columns of node ids (None: a step drawn without a group, e.g. the Note)."""
    title: str | None
    kind: str
    columns: list[list[int]]


def title_width(title: str) -> float:
    """Width the frontend needs for a node title (14 px sans: ~7 px a character plus the dot and margins, measured
    generously) - a wider title makes the frontend widen the node on load."""
    return 7.2 * len(title) + 40


def min_body_height(slots: int, widgets: int) -> int:
    """Height below the title bar that LiteGraph's computeSize gives (measured in the ComfyUI 1.35 frontend)."""
    return SLOT_H * max(slots, 1) + WIDGET_H * widgets + (8 if widgets else 0) + 6


def _pack():
    """The node pack, imported as ComfyUI does (a package from the repository root); reused when already loaded."""
    if PACK_MODULE in sys.modules:
        return sys.modules[PACK_MODULE]
    spec = importlib.util.spec_from_file_location(PACK_MODULE, REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_MODULE] = module
    spec.loader.exec_module(module)
    return module


def _signature(node_type: str, mappings) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Socket inputs {name: type} in the frontend's order and outputs [(name, type)] of a node type."""
    if node_type in CORE:
        return CORE[node_type]
    cls = mappings[node_type]
    inputs = {}
    for section in ("required", "optional"):
        for name, spec in cls.INPUT_TYPES().get(section, {}).items():
            force = len(spec) > 1 and spec[1].get("forceInput")     # a primitive shown as a socket
            if isinstance(spec[0], str) and (force or spec[0] not in ("INT", "FLOAT", "BOOLEAN", "STRING")):
                inputs[name] = spec[0]
    names = getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)
    return inputs, list(zip(names, cls.RETURN_TYPES))


def _ui_node(node: Node, order: int, mappings, links: list, outputs_links: dict) -> dict:
    """One node in the frontend's JSON form; every socket input is listed (unlinked ones too, so they show)."""
    in_types, outs = _signature(node.type, mappings)
    unknown = set(node.links) - set(in_types)
    if unknown:
        raise ValueError(f"node {node.id} ({node.type}) has no socket input {sorted(unknown)}; it has "
                         f"{sorted(in_types)}")
    inputs = []
    for index, (name, socket_type) in enumerate(in_types.items()):
        link_id = None
        if name in node.links:
            src, slot = node.links[name]
            link_id = len(links) + 1
            links.append([link_id, src, slot, node.id, index, socket_type])
            outputs_links.setdefault((src, slot), []).append(link_id)
        inputs.append({"name": name, "type": socket_type, "link": link_id})
    height = max(IMAGE_NODES.get(node.type, 0), min_body_height(max(len(inputs), len(outs)), len(node.widgets)))
    ui = {"id": node.id, "type": node.type, "pos": [0, 0], "size": [node.width, height], "flags": {},
          "order": order, "mode": 0, "inputs": inputs, "outputs": [], "properties": {"Node name for S&R": node.type},
          "widgets_values": node.widgets}
    if node.title:
        ui["title"] = node.title
    return ui


def _note(nid: int, order: int, text: str, width: int, height: int) -> dict:
    return {"id": nid, "type": "Note", "pos": [0, 0], "size": [width, height], "flags": {}, "order": order,
            "mode": 0, "inputs": [], "outputs": [], "properties": {}, "widgets_values": [text], **NOTE_COLORS}


def _place(steps: list[list[Step]], ui_nodes: dict[int, dict], note_id: int) -> list[dict]:
    """Positions every node: columns left to right, steps top to bottom, sub-columns side by side. Returns groups."""
    groups, x = [], 0
    for column in steps:
        y, column_width = 0, 0
        for step in column:
            pad, top = (GROUP_PAD, GROUP_TITLE_H + GROUP_PAD) if step.title else (0, 0)
            sub_x, bottom = x + pad, y + top
            for ids in step.columns:
                ids = [note_id if nid == NOTE_PLACE else nid for nid in ids]
                node_y = y + top + TITLE_H
                for nid in ids:
                    ui_nodes[nid]["pos"] = [sub_x, node_y]
                    node_y += ui_nodes[nid]["size"][1] + NODE_GAP + TITLE_H
                bottom = max(bottom, node_y - NODE_GAP - TITLE_H)
                sub_x += max(ui_nodes[nid]["size"][0] for nid in ids) + NODE_GAP
            width = sub_x - NODE_GAP + pad - x
            if step.title:
                groups.append({"id": len(groups) + 1, "title": step.title, "bounding": [x, y, width, bottom + pad - y],
                               "color": STEP_COLORS[step.kind], "font_size": 24, "flags": {}})
            y = bottom + pad + COLUMN_GAP - 2 * GROUP_PAD
            column_width = max(column_width, width)
        x += column_width + COLUMN_GAP - 2 * GROUP_PAD
    return groups


def build(nodes: list[Node], steps: list[list[Step]], note: str, title: str) -> dict:
    """A UI-format workflow: nodes, links, groups and the Note (placed in `steps` as NOTE_PLACE)."""
    mappings = _pack().NODE_CLASS_MAPPINGS
    links: list[list] = []
    outputs_links: dict[tuple[int, int], list[int]] = {}
    ui_nodes = {n.id: _ui_node(n, order, mappings, links, outputs_links) for order, n in enumerate(nodes)}
    note_id = max(ui_nodes) + 1
    ui_nodes[note_id] = _note(note_id, len(nodes), note, NOTE_SIZE[0], NOTE_SIZE[1])
    for node in ui_nodes.values():
        if node["type"] != "Note":
            _, outs = _signature(node["type"], mappings)
            node["outputs"] = [{"name": n, "type": t, "links": outputs_links.get((node["id"], i), []),
                                "slot_index": i} for i, (n, t) in enumerate(outs)]
    groups = _place(steps, ui_nodes, note_id)
    placed = {note_id if nid == NOTE_PLACE else nid for column in steps for step in column for ids in step.columns
              for nid in ids}
    if placed != set(ui_nodes):
        raise ValueError(f"layout of {title!r} misses nodes {sorted(set(ui_nodes) - placed)} or names unknown ones "
                         f"{sorted(placed - set(ui_nodes))}")
    _check_readable(title, list(ui_nodes.values()), groups)
    return {"last_node_id": note_id, "last_link_id": len(links), "nodes": list(ui_nodes.values()), "links": links,
            "groups": groups, "config": {}, "extra": {"title": title}, "version": 0.4}


def _check_readable(name: str, nodes: list[dict], groups: list[dict]) -> None:
    """Refuses a layout the frontend would widen (titles) or show below readable zoom (canvas size)."""
    for node in nodes:
        if node.get("title") and title_width(node["title"]) > node["size"][0]:
            raise ValueError(f"{name}: node {node['id']} title {node['title']!r} needs about "
                             f"{title_width(node['title']):.0f} px; make it shorter or the node wider")
    rects = [(n["pos"][0], n["pos"][1] - TITLE_H, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
             for n in nodes] + [(x, y, x + w, y + h) for x, y, w, h in (g["bounding"] for g in groups)]
    width = max(r[2] for r in rects) - min(r[0] for r in rects)
    height = max(r[3] for r in rects) - min(r[1] for r in rects)
    if width > MAX_CANVAS[0] or height > MAX_CANVAS[1]:
        raise ValueError(f"{name}: the graph is {width} x {height} canvas px, over {MAX_CANVAS}: fit-view would "
                         f"land below readable zoom; stack steps in fewer columns")


# ------------------------------------------------------------------------------------------------ the Note
NOTE_SIZE = (250, 200)
FACE_FILES = ["hyperstyle_ffhq.safetensors", "faces_w_encoder.safetensors"]


def note(files: list[str], groups: str, extra: str = "") -> str:
    """The Note of a workflow: the files it needs and the one command that gets them (groups of io/registry.py)."""
    listed = "\n".join(f"  {name}" for name in files)
    return (f"FILES it needs (ComfyUI/models/hyperstyle/\nor this pack's models/):\n{listed}\n\n"
            f"GET THEM: run in this pack's folder\npython -m hyperstyle_core download {groups}\n"
            f"(pip-installed: hyperstyle download {groups})" + (f"\n\n{extra}" if extra else ""))


# ------------------------------------------------------------------------------------------------ the workflows
def photo_to_deltas() -> list[Node]:
    """Nodes 1-6 of the single-photo workflows: photo -> align -> encode -> refine (model 3, latent 5, deltas 6,
    alignment 2)."""
    return [
        Node(1, "LoadImage", ["face_image.jpg", "image"], title="Photo"),
        Node(2, "HyperStyleAlignFace", [256, "largest", 0, "error"], {"image": (1, 0)}, title="Align face"),
        Node(3, "HyperStyleLoadModel", ["hyperstyle_ffhq.safetensors", "fp32"], title="Load HyperStyle model",
             width=WIDE),
        Node(4, "HyperStyleLoadWEncoder", ["faces_w_encoder.safetensors", "fp32"], title="Load W-encoder",
             width=WIDE),
        Node(5, "HyperStyleEncode", [4], {"model": (3, 0), "w_encoder": (4, 0), "image": (2, 0)},
             title="Encode (W latent)", width=WIDE),
        Node(6, "HyperStyleRefine", [5, False, 4, False], {"model": (3, 0), "image": (2, 0), "latent": (5, 0)},
             title="Refine (weight deltas)", width=WIDE),
    ]


ALIGN = Step("1 Align", "align", [[1, 2]])
NOTE_PLACE = 0                                   # where a layout puts the workflow's Note (it gets the next id)
NOTE = Step(None, "note", [[NOTE_PLACE]])


def invert_edit() -> dict:
    nodes = photo_to_deltas() + [
        Node(7, "HyperStyleLoadDirection", ["age.safetensors"], title="Load age direction", width=250),
        Node(8, "HyperStyleLatentEdit", [3.0], {"latent": (5, 0), "direction": (7, 0)}, title="Edit age +3",
             width=250),
        Node(9, "HyperStyleLoadDirection", ["smile.safetensors"], title="Load smile direction", width=250),
        Node(10, "HyperStyleLatentEdit", [2.0], {"latent": (5, 0), "direction": (9, 0)}, title="Edit smile +2",
             width=250),
        Node(11, "HyperStyleGenerate", [1.0, False, 4], {"generator": (3, 1), "latent": (8, 0), "deltas": (6, 0)},
             title="Render age +3"),
        Node(12, "HyperStyleGenerate", [1.0, False, 4], {"generator": (3, 1), "latent": (10, 0), "deltas": (6, 0)},
             title="Render smile +2"),
        Node(13, "HyperStylePasteBack", [0.1], {"original": (1, 0), "face": (11, 0), "alignment": (2, 1)},
             title="Paste back age +3"),
        Node(14, "HyperStylePasteBack", [0.1], {"original": (1, 0), "face": (12, 0), "alignment": (2, 1)},
             title="Paste back smile +2"),
        Node(15, "PreviewImage", [], {"images": (6, 1)}, title="Preview reconstruction", width=WIDE),
        Node(16, "SaveImage", ["HyperStyle/age"], {"images": (13, 0)}, title="Save age +3"),
        Node(17, "SaveImage", ["HyperStyle/smile"], {"images": (14, 0)}, title="Save smile +2"),
    ]
    steps = [[NOTE, ALIGN], [Step("2 Invert", "invert", [[3, 4, 5, 6, 15]])],
             [Step("3 Edit", "edit", [[7, 8, 9, 10], [11, 12]]), Step("4 Paste back", "paste", [[13], [14]])],
             [Step("5 Save", "save", [[16, 17]])]]
    files = FACE_FILES + ["age.safetensors", "smile.safetensors"]
    return build(nodes, steps, note(files, "faces"), "HyperStyle: invert, age and smile edits, paste back")


def toonify() -> dict:
    nodes = photo_to_deltas() + [
        Node(7, "HyperStyleLoadReStyle", ["restyle_e4e_ffhq_encode.safetensors", "fp32"], title="Load ReStyle-e4e",
             width=WIDE),
        Node(8, "HyperStyleEncodeReStyle", [2, 4], {"restyle": (7, 0), "image": (2, 0)},
             title="Encode ReStyle (W+ latent)", width=WIDE),
        Node(9, "HyperStyleLoadGenerator", ["toonify.safetensors", "fp32"], title="Load Toonify generator",
             width=WIDE),
        Node(10, "HyperStyleTransferDeltas", ["toonify (official: 14,15,17,18,20,21,23,24)", 1.0, False, 4],
             {"generator": (9, 0), "latent": (8, 0), "deltas": (6, 0)}, title="Toonify with deltas", width=WIDE),
        Node(11, "HyperStyleGenerate", [0.0, False, 4], {"generator": (9, 0), "latent": (8, 0)},
             title="Toonify, no deltas", width=WIDE),
        Node(12, "SaveImage", ["HyperStyle/toonify"], {"images": (10, 0)}, title="Save toonified"),
        Node(13, "PreviewImage", [], {"images": (11, 0)}, title="Preview: no deltas"),
    ]
    steps = [[NOTE, ALIGN], [Step("2 Invert (HyperStyle deltas + ReStyle latent)", "invert", [[3, 4, 5, 6], [7, 8]])],
             [Step("3 Toonify", "edit", [[9, 10, 11]])], [Step("4 Save", "save", [[12, 13]])]]
    files = FACE_FILES + ["restyle_e4e_ffhq_encode.safetensors", "toonify.safetensors"]
    return build(nodes, steps, note(files, "faces domain"),
                 "HyperStyle: Toonify domain adaptation (ReStyle-e4e latent + FFHQ deltas)")


def batch() -> dict:
    nodes = [
        Node(1, "LoadImage", ["face_image.jpg", "image"], title="Photo 1"),
        Node(2, "LoadImage", ["aligned_affleck.jpg", "image"], title="Photo 2"),
        Node(3, "LoadImage", ["aligned_johansson.jpg", "image"], title="Photo 3"),
        Node(4, "ImageBatch", [], {"image1": (1, 0), "image2": (2, 0)}, title="Batch photos 1+2"),
        Node(5, "ImageBatch", [], {"image1": (4, 0), "image2": (3, 0)}, title="Batch + photo 3"),
        Node(6, "HyperStyleAlignFace", [256, "largest", 0, "skip"], {"image": (5, 0)}, title="Align faces"),
        Node(7, "HyperStyleLoadModel", ["hyperstyle_ffhq.safetensors", "fp32"], title="Load HyperStyle model",
             width=WIDE),
        Node(8, "HyperStyleLoadWEncoder", ["faces_w_encoder.safetensors", "fp32"], title="Load W-encoder",
             width=WIDE),
        Node(9, "HyperStyleEncode", [4], {"model": (7, 0), "w_encoder": (8, 0), "image": (6, 0)},
             title="Encode (W latents)", width=WIDE),
        Node(10, "HyperStyleRefine", [5, False, 4, False], {"model": (7, 0), "image": (6, 0), "latent": (9, 0)},
             title="Refine (weight deltas)", width=WIDE),
        Node(11, "HyperStyleGenerate", [1.0, False, 4], {"generator": (7, 1), "latent": (9, 0), "deltas": (10, 0)},
             title="Render inversions"),
        Node(12, "HyperStylePasteBack", [0.1], {"original": (5, 0), "face": (11, 0), "alignment": (6, 1)},
             title="Paste back"),
        Node(13, "SaveImage", ["HyperStyle/batch"], {"images": (12, 0)}, title="Save pasted back"),
        Node(14, "PreviewImage", [], {"images": (11, 0)}, title="Preview inversions"),
    ]
    steps = [[Step("1 Photos, align", "align", [[1, 2], [3, 4, 5, 6]])],
             [NOTE, Step("2 Invert", "invert", [[7, 8, 9, 10]])],
             [Step("3 Render", "edit", [[11, 14]]), Step("4 Paste back", "paste", [[12]])],
             [Step("5 Save", "save", [[13]])]]
    return build(nodes, steps, note(FACE_FILES, "faces"), "HyperStyle: several photos in one batch")


def edit_sweep() -> dict:
    nodes = photo_to_deltas() + [
        Node(7, "HyperStyleLoadDirection", ["age.safetensors"], title="Load age direction", width=260),
        Node(8, "HyperStyleLatentEditSweep", [-3.0, 3.0, 5], {"latent": (5, 0), "direction": (7, 0), "deltas": (6, 0)},
             title="Age sweep -3..+3", width=260),
        Node(9, "HyperStyleComputeGanSpace", [10000, 16, 0, ""], {"generator": (3, 1)}, title="Compute GANSpace",
             width=260),
        Node(10, "HyperStyleGanSpaceEdit", [0, 0, 8, 3.0], {"latent": (5, 0), "ganspace": (9, 0)},
             title="GANSpace edit", width=260),
        Node(11, "HyperStyleGenerate", [1.0, False, 4], {"generator": (3, 1), "latent": (8, 0), "deltas": (8, 1)},
             title="Render age sweep"),
        Node(12, "HyperStyleGenerate", [1.0, False, 4], {"generator": (3, 1), "latent": (10, 0), "deltas": (6, 0)},
             title="Render GANSpace edit"),
        Node(13, "HyperStylePasteBack", [0.1], {"original": (1, 0), "face": (11, 0), "alignment": (2, 1)},
             title="Paste back frames"),
        Node(14, "HyperStyleSaveAnimation", ["HyperStyle/age_sweep", "webp", 4.0, True], {"images": (11, 0)},
             title="Save age animation"),
        Node(15, "SaveImage", ["HyperStyle/age_sweep_pasted"], {"images": (13, 0)}, title="Save pasted frames"),
        Node(16, "PreviewImage", [], {"images": (12, 0)}, title="Preview GANSpace edit"),
    ]
    steps = [[NOTE, ALIGN], [Step("2 Invert", "invert", [[3, 4, 5, 6]])],
             [Step("3 Edit", "edit", [[7, 8, 9, 10], [11, 12, 16]])],
             [Step("4 Paste back", "paste", [[13]]), Step("5 Save", "save", [[14, 15]])]]
    return build(nodes, steps, note(FACE_FILES + ["age.safetensors"], "faces"),
                 "HyperStyle: age sweep (animation + pasted frames) and a GANSpace edit")


def folder() -> dict:
    nodes = [
        Node(1, "HyperStyleLoadImageFolder", ["", "*.jpg;*.jpeg;*.png;*.webp", 4, 0, "pad"], title="Photo folder",
             width=250),
        Node(2, "HyperStyleAlignFace", [256, "largest", 0, "skip"], {"image": (1, 0)}, title="Align faces",
             width=250),
        Node(3, "HyperStyleLoadModel", ["hyperstyle_ffhq.safetensors", "fp32"], title="Load HyperStyle model",
             width=WIDE),
        Node(4, "HyperStyleLoadWEncoder", ["faces_w_encoder.safetensors", "fp32"], title="Load W-encoder",
             width=WIDE),
        Node(5, "HyperStyleEncode", [4], {"model": (3, 0), "w_encoder": (4, 0), "image": (2, 0)},
             title="Encode (W latents)", width=WIDE),
        Node(6, "HyperStyleRefine", [5, False, 4, False], {"model": (3, 0), "image": (2, 0), "latent": (5, 0)},
             title="Refine (weight deltas)", width=WIDE),
        Node(7, "HyperStyleGenerate", [1.0, False, 4], {"generator": (3, 1), "latent": (5, 0), "deltas": (6, 0)},
             title="Render inversions"),
        Node(8, "HyperStylePasteBack", [0.1], {"original": (1, 0), "face": (7, 0), "alignment": (2, 1)},
             title="Paste back"),
        Node(9, "HyperStyleSaveImagesNamed", ["HyperStyle/folder", "_pasted"], {"images": (8, 0), "names": (1, 1)},
             title="Save under photo names", width=250),
        Node(10, "PreviewImage", [], {"images": (7, 0)}, title="Preview inversions"),
    ]
    steps = [[NOTE, Step("1 Photos, align", "align", [[1, 2]])], [Step("2 Invert", "invert", [[3, 4, 5, 6]])],
             [Step("3 Render", "edit", [[7, 10]]), Step("4 Paste back", "paste", [[8]])],
             [Step("5 Save", "save", [[9]])]]
    extra = "PHOTOS: up to 4 from ComfyUI's input\nfolder (or set folder)."
    return build(nodes, steps, note(FACE_FILES, "faces", extra),
                 "HyperStyle: a folder of photos (input folder), pasted back under their names")


WORKFLOWS = {"hyperstyle_invert_edit.json": invert_edit, "hyperstyle_toonify.json": toonify,
             "hyperstyle_batch.json": batch, "hyperstyle_edit_sweep.json": edit_sweep,
             "hyperstyle_folder.json": folder}


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    OUT_DIR.mkdir(exist_ok=True)
    for name, make in WORKFLOWS.items():
        (OUT_DIR / name).write_text(json.dumps(make(), indent=1) + "\n")
        print("wrote", OUT_DIR / name)


if __name__ == "__main__":
    main()
