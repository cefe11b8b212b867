"""Pictures of the workflows from screenshots of their runs: the template browser's thumbnails and the README's.

    python tools/workflow_pictures.py SHOTS     # SHOTS: comfy_accept.py --browser --screenshots SHOTS

Writes <name>.jpg beside each workflow in workflows/ (ComfyUI's template browser shows it) and docs/workflow_*.jpg
for the three workflows the README and docs show.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_DIR = REPO / "workflows"
TITLE_H = 30               # LiteGraph's node title bar height: node positions are below it
THUMBNAIL_WIDTH = 512
DOCS_DIR = REPO / "docs"
README_SHOTS = ("hyperstyle_invert_edit", "hyperstyle_toonify", "hyperstyle_edit_sweep")
FIT_MARGIN = 0.75          # the frontend's fit-view: zoom = 0.75 x canvas / node bounds, centred


def graph_box(workflow: dict, screen: tuple[int, int], margin: int = 24) -> tuple[int, int, int, int]:
    """Where fit-view puts the graph in a screenshot of the given size (the nodes' bounds, title bars included,
    scaled and centred as the frontend's fitView does), plus a margin that takes in the group frames."""
    rects = [(n["pos"][0], n["pos"][1] - TITLE_H, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
             for n in workflow["nodes"]]
    width = max(r[2] for r in rects) - min(r[0] for r in rects)
    height = max(r[3] for r in rects) - min(r[1] for r in rects)
    zoom = min(FIT_MARGIN * screen[0] / width, FIT_MARGIN * screen[1] / height)
    half_w, half_h = zoom * width / 2 + margin, zoom * height / 2 + margin
    cx, cy = screen[0] / 2, screen[1] / 2
    return (max(0, int(cx - half_w)), max(0, int(cy - half_h)), min(screen[0], int(cx + half_w)),
            min(screen[1], int(cy + half_h)))


def thumbnail(screenshot: Path, workflow: dict, out: Path, width: int = THUMBNAIL_WIDTH) -> None:
    """A template-browser thumbnail: the graph cut out of a fit-view screenshot (the frontend shows it whole)."""
    with Image.open(screenshot) as shot:
        graph = shot.convert("RGB").crop(graph_box(workflow, shot.size))
    graph.thumbnail((width, width), Image.LANCZOS)
    graph.save(out, "JPEG", quality=85, optimize=True)


def readme_screenshot(screenshot: Path, out: Path, max_bytes: int = 300_000) -> None:
    """A README picture: the whole fit-view screenshot as JPEG, quality lowered until it is under max_bytes."""
    with Image.open(screenshot) as shot:
        picture = shot.convert("RGB")
    for quality in (85, 75, 65, 55):
        picture.save(out, "JPEG", quality=quality, optimize=True)
        if out.stat().st_size <= max_bytes:
            return
    raise ValueError(f"{out} stays over {max_bytes} bytes at JPEG quality 55; use a smaller screenshot")


def write_pictures(shots: Path) -> None:
    """From comfy_accept's <name>_done.png (fit-view after the run, outputs shown): <name>.jpg beside each workflow
    (the template browser's thumbnail) and the README's docs/workflow_<short>.jpg."""
    for path in sorted(WORKFLOW_DIR.glob("*.json")):
        stem = path.stem
        shot = shots / f"{stem}_done.png"
        if not shot.is_file():
            raise FileNotFoundError(f"{shot} not found: run comfy_accept.py --browser --screenshots {shots} on the "
                                    f"workflows in {WORKFLOW_DIR} first")
        thumbnail(shot, json.loads(path.read_text()), WORKFLOW_DIR / f"{stem}.jpg")
        print("wrote", WORKFLOW_DIR / f"{stem}.jpg")
        if stem in README_SHOTS:
            out = DOCS_DIR / f"workflow_{stem.removeprefix('hyperstyle_')}.jpg"
            readme_screenshot(shot, out)
            print("wrote", out)




def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shots", type=Path, help="folder of comfy_accept --browser screenshots (<name>_done.png)")
    write_pictures(parser.parse_args(argv).shots)


if __name__ == "__main__":
    main()
