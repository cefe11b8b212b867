"""Writes the UI-format workflow files in workflows/ from compact descriptions (run after changing nodes).

    python tools/build_workflows.py

Each node is (id, type, widget values, {input name: (source id, source slot)}). Widget values follow the order the
ComfyUI frontend builds from INPUT_TYPES (required, then optional; LoadImage adds its 'upload' widget value).
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# ComfyUI core nodes the workflows use: input types (links only) and output types.
CORE = {
    "LoadImage": ({}, [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "ImageBatch": ({"image1": "IMAGE", "image2": "IMAGE"}, [("IMAGE", "IMAGE")]),
    "PreviewImage": ({"images": "IMAGE"}, []),
    "SaveImage": ({"images": "IMAGE"}, []),
}


def _pack():
    spec = importlib.util.spec_from_file_location("hyperstyle_pack", REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["hyperstyle_pack"] = module
    spec.loader.exec_module(module)
    return module


def _signature(node_type: str, mappings):
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


def build(nodes: list[tuple], columns: dict[int, tuple[int, int]], title: str) -> dict:
    mappings = _pack().NODE_CLASS_MAPPINGS
    links, ui_nodes = [], []
    outputs_links: dict[tuple[int, int], list[int]] = {}
    for order, (nid, node_type, widgets, connections) in enumerate(nodes):
        in_types, _ = _signature(node_type, mappings)
        inputs = []
        for name, (src, slot) in connections.items():
            link_id = len(links) + 1
            links.append([link_id, src, slot, nid, len(inputs), in_types[name]])
            outputs_links.setdefault((src, slot), []).append(link_id)
            inputs.append({"name": name, "type": in_types[name], "link": link_id})
        ui_nodes.append({"id": nid, "type": node_type, "inputs": inputs, "widgets_values": widgets, "order": order})
    for node in ui_nodes:
        _, outs = _signature(node["type"], mappings)
        node["outputs"] = [{"name": n, "type": t, "links": outputs_links.get((node["id"], i), []), "slot_index": i}
                           for i, (n, t) in enumerate(outs)]
        col, row = columns[node["id"]]
        rows = max(len(node["inputs"]), len(node["outputs"])) + len(node["widgets_values"])
        height = 330 if node["type"] in ("LoadImage", "PreviewImage", "SaveImage") else 50 + 24 * rows
        node.update(pos=[40 + 380 * col, 40 + 360 * row], size=[340, height], flags={}, mode=0,
                    properties={"Node name for S&R": node["type"]})
    return {"last_node_id": max(n["id"] for n in ui_nodes), "last_link_id": len(links), "nodes": ui_nodes,
            "links": links, "groups": [], "config": {}, "extra": {"title": title}, "version": 0.4}


# Nodes 1-6 shared by the single-photo workflows: photo -> align -> encode -> refine (model is node 3, latent 5,
# deltas 6, alignment 2).
PHOTO_TO_DELTAS = [
        (1, "LoadImage", ["face_image.jpg", "image"], {}),
        (2, "HyperStyleAlignFace", [256, "largest", 0, "error"], {"image": (1, 0)}),
        (3, "HyperStyleLoadModel", ["hyperstyle_ffhq.safetensors", "fp32"], {}),
        (4, "HyperStyleLoadWEncoder", ["faces_w_encoder.safetensors", "fp32"], {}),
        (5, "HyperStyleEncode", [4], {"model": (3, 0), "w_encoder": (4, 0), "image": (2, 0)}),
        (6, "HyperStyleRefine", [5, False, 4], {"model": (3, 0), "image": (2, 0), "latent": (5, 0)}),
]


def invert_edit():
    nodes = PHOTO_TO_DELTAS + [
        (7, "HyperStyleGenerate", [1.0, False, 4], {"generator": (3, 1), "latent": (5, 0), "deltas": (6, 0)}),
        (8, "HyperStyleLoadDirection", ["age.safetensors"], {}),
        (9, "HyperStyleLatentEdit", [3.0], {"latent": (5, 0), "direction": (8, 0)}),
        (10, "HyperStyleGenerate", [1.0, False, 4], {"generator": (3, 1), "latent": (9, 0), "deltas": (6, 0)}),
        (11, "HyperStyleLoadDirection", ["smile.safetensors"], {}),
        (12, "HyperStyleLatentEdit", [2.0], {"latent": (5, 0), "direction": (11, 0)}),
        (13, "HyperStyleGenerate", [1.0, False, 4], {"generator": (3, 1), "latent": (12, 0), "deltas": (6, 0)}),
        (14, "HyperStylePasteBack", [0.1], {"original": (1, 0), "face": (10, 0), "alignment": (2, 1)}),
        (15, "HyperStylePasteBack", [0.1], {"original": (1, 0), "face": (13, 0), "alignment": (2, 1)}),
        (16, "PreviewImage", [], {"images": (7, 0)}),
        (17, "SaveImage", ["HyperStyle/age"], {"images": (14, 0)}),
        (18, "SaveImage", ["HyperStyle/smile"], {"images": (15, 0)}),
    ]
    columns = {1: (0, 0), 2: (1, 0), 3: (0, 1), 4: (0, 2), 5: (1, 1), 6: (2, 1), 7: (3, 0), 16: (4, 0),
               8: (2, 2), 9: (3, 2), 10: (4, 2), 14: (5, 2), 17: (6, 2),
               11: (2, 3), 12: (3, 3), 13: (4, 3), 15: (5, 3), 18: (6, 3)}
    return build(nodes, columns, "HyperStyle: invert, age and smile edits, paste back")


def toonify():
    nodes = PHOTO_TO_DELTAS + [
        (7, "HyperStyleLoadReStyle", ["restyle_e4e_ffhq_encode.safetensors", "fp32"], {}),
        (8, "HyperStyleEncodeReStyle", [2, 4], {"restyle": (7, 0), "image": (2, 0)}),
        (9, "HyperStyleLoadGenerator", ["toonify.safetensors", "fp32"], {}),
        (10, "HyperStyleTransferDeltas", ["toonify (official: 14,15,17,18,20,21,23,24)", 1.0, False, 4],
         {"generator": (9, 0), "latent": (8, 0), "deltas": (6, 0)}),
        (11, "HyperStyleGenerate", [0.0, False, 4], {"generator": (9, 0), "latent": (8, 0)}),
        (12, "SaveImage", ["HyperStyle/toonify"], {"images": (10, 0)}),
        (13, "PreviewImage", [], {"images": (11, 0)}),
    ]
    columns = {1: (0, 0), 2: (1, 0), 3: (0, 1), 4: (0, 2), 5: (1, 1), 6: (2, 1), 7: (1, 2), 8: (2, 2),
               9: (2, 3), 10: (3, 1), 11: (3, 3), 12: (4, 1), 13: (4, 3)}
    return build(nodes, columns, "HyperStyle: Toonify domain adaptation (ReStyle-e4e latent + FFHQ deltas)")


def batch():
    nodes = [
        (1, "LoadImage", ["face_image.jpg", "image"], {}),
        (2, "LoadImage", ["aligned_affleck.jpg", "image"], {}),
        (3, "LoadImage", ["aligned_johansson.jpg", "image"], {}),
        (4, "ImageBatch", [], {"image1": (1, 0), "image2": (2, 0)}),
        (5, "ImageBatch", [], {"image1": (4, 0), "image2": (3, 0)}),
        (6, "HyperStyleAlignFace", [256, "largest", 0, "skip"], {"image": (5, 0)}),
        (7, "HyperStyleLoadModel", ["hyperstyle_ffhq.safetensors", "fp32"], {}),
        (8, "HyperStyleLoadWEncoder", ["faces_w_encoder.safetensors", "fp32"], {}),
        (9, "HyperStyleEncode", [4], {"model": (7, 0), "w_encoder": (8, 0), "image": (6, 0)}),
        (10, "HyperStyleRefine", [5, False, 4], {"model": (7, 0), "image": (6, 0), "latent": (9, 0)}),
        (11, "HyperStyleGenerate", [1.0, False, 4], {"generator": (7, 1), "latent": (9, 0), "deltas": (10, 0)}),
        (12, "HyperStylePasteBack", [0.1], {"original": (5, 0), "face": (11, 0), "alignment": (6, 1)}),
        (13, "SaveImage", ["HyperStyle/batch"], {"images": (12, 0)}),
        (14, "PreviewImage", [], {"images": (11, 0)}),
    ]
    columns = {1: (0, 0), 2: (0, 1), 3: (0, 2), 4: (1, 0), 5: (1, 1), 6: (2, 0), 7: (1, 2), 8: (1, 3),
               9: (3, 1), 10: (4, 1), 11: (5, 1), 12: (6, 0), 13: (7, 0), 14: (6, 2)}
    return build(nodes, columns, "HyperStyle: several photos in one batch")


def edit_sweep():
    nodes = PHOTO_TO_DELTAS + [
        (7, "HyperStyleLoadDirection", ["age.safetensors"], {}),
        (8, "HyperStyleLatentEditSweep", [-3.0, 3.0, 5], {"latent": (5, 0), "direction": (7, 0), "deltas": (6, 0)}),
        (9, "HyperStyleGenerate", [1.0, False, 4], {"generator": (3, 1), "latent": (8, 0), "deltas": (8, 1)}),
        (10, "HyperStyleSaveAnimation", ["HyperStyle/age_sweep", "webp", 4.0, True], {"images": (9, 0)}),
        (11, "HyperStylePasteBack", [0.1], {"original": (1, 0), "face": (9, 0), "alignment": (2, 1)}),
        (12, "SaveImage", ["HyperStyle/age_sweep_pasted"], {"images": (11, 0)}),
        (13, "HyperStyleComputeGanSpace", [10000, 16, 0, ""], {"generator": (3, 1)}),
        (14, "HyperStyleGanSpaceEdit", [0, 0, 8, 3.0], {"latent": (5, 0), "ganspace": (13, 0)}),
        (15, "HyperStyleGenerate", [1.0, False, 4], {"generator": (3, 1), "latent": (14, 0), "deltas": (6, 0)}),
        (16, "PreviewImage", [], {"images": (15, 0)}),
    ]
    columns = {1: (0, 0), 2: (1, 0), 3: (0, 1), 4: (0, 2), 5: (1, 1), 6: (2, 1), 7: (2, 0), 8: (3, 0), 9: (4, 0),
               10: (5, 0), 11: (5, 1), 12: (6, 1), 13: (2, 2), 14: (3, 2), 15: (4, 2), 16: (5, 2)}
    return build(nodes, columns, "HyperStyle: age sweep (animation + pasted frames) and a GANSpace edit")


def folder():
    nodes = [
        (1, "HyperStyleLoadImageFolder", ["", "*.jpg;*.jpeg;*.png;*.webp", 4, 0, "pad"], {}),
        (2, "HyperStyleAlignFace", [256, "largest", 0, "skip"], {"image": (1, 0)}),
        (3, "HyperStyleLoadModel", ["hyperstyle_ffhq.safetensors", "fp32"], {}),
        (4, "HyperStyleLoadWEncoder", ["faces_w_encoder.safetensors", "fp32"], {}),
        (5, "HyperStyleEncode", [4], {"model": (3, 0), "w_encoder": (4, 0), "image": (2, 0)}),
        (6, "HyperStyleRefine", [5, False, 4], {"model": (3, 0), "image": (2, 0), "latent": (5, 0)}),
        (7, "HyperStyleGenerate", [1.0, False, 4], {"generator": (3, 1), "latent": (5, 0), "deltas": (6, 0)}),
        (8, "HyperStylePasteBack", [0.1], {"original": (1, 0), "face": (7, 0), "alignment": (2, 1)}),
        (9, "HyperStyleSaveImagesNamed", ["hyperstyle_folder", "_pasted"], {"images": (8, 0), "names": (1, 1)}),
        (10, "PreviewImage", [], {"images": (7, 0)}),
    ]
    columns = {1: (0, 0), 2: (1, 0), 3: (0, 1), 4: (0, 2), 5: (1, 1), 6: (2, 1), 7: (3, 1), 8: (4, 0), 9: (5, 0),
               10: (4, 1)}
    return build(nodes, columns, "HyperStyle: a folder of photos (input folder), pasted back under their names")


WORKFLOWS = {"hyperstyle_invert_edit.json": invert_edit, "hyperstyle_toonify.json": toonify,
             "hyperstyle_batch.json": batch, "hyperstyle_edit_sweep.json": edit_sweep,
             "hyperstyle_folder.json": folder}

if __name__ == "__main__":
    out = REPO / "workflows"
    out.mkdir(exist_ok=True)
    for name, make in WORKFLOWS.items():
        (out / name).write_text(json.dumps(make(), indent=1) + "\n")
        print("wrote", out / name)
