"""The example workflows read at fit-view zoom in the ComfyUI frontend: no node touches another, the graph fits a
window at a readable zoom, steps sit in groups, repeated nodes have distinct titles, a Note names the files."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO
from hyperstyle_core.io.registry import GROUPS, expand_names

WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
VIRTUAL_TYPES = {"Note", "MarkdownNote"}      # frontend-only nodes
TITLE_H = 30              # LiteGraph draws the title bar above node.pos
FIT_MARGIN = 0.75         # the frontend's fitView: zoom = 0.75 * window / graph bounds
LOW_DETAIL_ZOOM = 8 / 14  # below it nodes lose their text (min font size for LOD 8 px / node text 14 px)
READABLE = (1600, 1000)   # graph bounds: fit-view of a 1600x1000 window >= 0.75, of 1280x800 >= 0.6


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _rect(node: dict) -> tuple[float, float, float, float]:
    x, y = node["pos"]
    w, h = node["size"]
    return x, y - TITLE_H, x + w, y + h


def _overlap(a, b, clearance: float = 0.0) -> bool:
    return a[0] < b[2] + clearance and b[0] < a[2] + clearance and a[1] < b[3] + clearance and b[1] < a[3] + clearance


def _bounds(workflow: dict) -> tuple[float, float]:
    rects = [_rect(n) for n in workflow["nodes"]]
    rects += [(x, y, x + w, y + h) for x, y, w, h in (g["bounding"] for g in workflow["groups"])]
    return (max(r[2] for r in rects) - min(r[0] for r in rects), max(r[3] for r in rects) - min(r[1] for r in rects))


SHOWS_IMAGES = {"PreviewImage", "SaveImage", "HyperStyleSaveImagesNamed"}   # get an image preview after a run


def frontend_min_height(node: dict) -> int:
    """LiteGraph computeSize of the ComfyUI 1.35 frontend, measured: 20 px per socket row, 24 per widget row, 14 px
    margin (6 without widgets); LoadImage keeps ~326 px for its picture, and a node showing results gets a 220 px
    image preview (then 18 px margin). A node saved smaller is grown, into its neighbours."""
    if node["type"] == "LoadImage":
        return 326
    slots = max(len(node.get("inputs") or []), len(node.get("outputs") or []), 1)
    widgets = len(node.get("widgets_values") or [])
    if node["type"] in SHOWS_IMAGES:
        return 20 * slots + 24 * widgets + 220 + 18
    return 20 * slots + 24 * widgets + (14 if widgets else 6)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_no_node_touches_another(path):
    nodes = _load(path)["nodes"]
    for node in nodes:
        if node["type"] not in VIRTUAL_TYPES:
            assert node["size"][1] >= frontend_min_height(node), \
                f"{path.name}: node {node['id']} ({node['type']}) would grow into its neighbours when loaded"
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            assert not _overlap(_rect(a), _rect(b), clearance=10), \
                f"{path.name}: nodes {a['id']} and {b['id']} overlap or touch"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_fit_view_lands_at_readable_zoom(path):
    width, height = _bounds(_load(path))
    assert width <= READABLE[0] and height <= READABLE[1], f"{path.name} is {width:.0f} x {height:.0f} canvas px"
    for window, wanted in (((1600, 1000), 0.75), ((1280, 800), 0.6), ((1920, 1080), 0.8)):
        zoom = min(FIT_MARGIN * window[0] / width, FIT_MARGIN * window[1] / height)
        assert zoom >= wanted > LOW_DETAIL_ZOOM, f"{path.name}: fit-view of a {window} window at {zoom:.2f}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_groups_hold_the_steps(path):
    """Every working node sits inside exactly one group (a step: align, invert, edit, paste back, save), and the
    groups do not overlap."""
    workflow = _load(path)
    groups = [(x, y, x + w, y + h) for x, y, w, h in (g["bounding"] for g in workflow["groups"])]
    titles = [g["title"] for g in workflow["groups"]]
    for step in ("align", "invert", "save"):
        assert any(step in t.lower() for t in titles), f"{path.name}: no {step} group in {titles}"
    for i, a in enumerate(groups):
        for b in groups[i + 1:]:
            assert not _overlap(a, b), f"{path.name}: groups {titles[i]!r} and another overlap"
    for node in workflow["nodes"]:
        if node["type"] in VIRTUAL_TYPES:
            continue
        r = _rect(node)
        inside = [t for t, g in zip(titles, groups) if g[0] <= r[0] and g[1] <= r[1] and r[2] <= g[2] and r[3] <= g[3]]
        assert len(inside) == 1, f"{path.name}: node {node['id']} ({node['type']}) is in groups {inside}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_repeated_node_types_have_distinct_titles(path):
    nodes = _load(path)["nodes"]
    for node_type, count in Counter(n["type"] for n in nodes if n["type"] not in VIRTUAL_TYPES).items():
        if count > 1:
            titles = [n.get("title") for n in nodes if n["type"] == node_type]
            assert None not in titles and len(set(titles)) == count, f"{path.name}: {node_type} titles {titles}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_note_names_the_files_and_the_command_that_gets_them(path):
    workflow = _load(path)
    notes = [n for n in workflow["nodes"] if n["type"] == "Note"]
    assert len(notes) == 1 and len(notes[0]["widgets_values"]) == 1
    text = notes[0]["widgets_values"][0]
    files = {v for n in workflow["nodes"] for v in n.get("widgets_values") or []
             if isinstance(v, str) and v.endswith(".safetensors")}
    assert files and all(name in text for name in files), f"{path.name}: the Note lacks some of {sorted(files)}"
    command = re.search(r"python -m hyperstyle_core download ([a-z_ ]+)\n", text)
    assert command, f"{path.name}: the Note has no download command"
    groups = command.group(1).split()
    assert set(groups) <= set(GROUPS), f"{path.name}: {groups} are not download groups"
    fetched = set(expand_names(groups))
    assert {Path(f).stem for f in files} <= fetched, f"{path.name}: the command does not fetch {sorted(files)}"
