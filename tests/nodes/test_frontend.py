"""What a ComfyUI user meets in the frontend: display names the node search finds, wrong inputs that name the node to
connect, saved PNGs that carry their workflow (and none with --disable-metadata), Save Animation's preview, and the
wire colours of the HYPERSTYLE_* types (the web extension, run under node with the frontend's palette loading)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from conftest import REPO

COMFYUI = Path(os.environ.get("HYPERSTYLE_COMFYUI", REPO.parent / "comfy" / "ComfyUI"))
WIRES_JS = REPO / "web" / "hyperstyle_wires.js"
PROMPT = {"3": {"class_type": "HyperStyleSaveImagesNamed", "inputs": {"subfolder": "HyperStyle/folder"}}}
WORKFLOW = {"last_node_id": 3, "nodes": [{"id": 3, "type": "HyperStyleSaveImagesNamed"}], "links": [],
            "version": 0.4}

# What users type into the node search -> nodes it must find.
SEARCHES = {
    "invert": {"HyperStyleEncode", "HyperStyleRefine", "HyperStyleEncodeReStyle"},
    "toonify": {"HyperStyleTransferDeltas", "HyperStyleLoadGenerator", "HyperStyleEncodeReStyle"},
    "domain": {"HyperStyleTransferDeltas"},
    "edit age": {"HyperStyleLatentEdit", "HyperStyleLatentEditSweep"},
    "smile": {"HyperStyleLatentEdit", "HyperStyleLoadDirection"},
    "text prompt": {"HyperStyleStyleCLIPEdit"},
    "morph": {"HyperStyleInterpolate"},
    "paste face": {"HyperStylePasteBack"},
    "align face": {"HyperStyleAlignFace"},
    "gif": {"HyperStyleSaveAnimation"},
}


def _found_by(query: str, display_name: str) -> bool:
    # The frontend's fuzzy search (Fuse, every word must match) finds at least what contains every word.
    return all(word in display_name.lower() for word in query.split())


def test_display_names_carry_the_words_users_search_for(pack):
    from hyperstyle_pack.nodes._names import NAMES
    names = pack.NODE_DISPLAY_NAME_MAPPINGS
    assert set(names) == set(pack.NODE_CLASS_MAPPINGS) == set(NAMES)       # ids unchanged: saved workflows load
    for query, expected in SEARCHES.items():
        found = {node_id for node_id, name in names.items() if _found_by(query, name)}
        assert expected <= found, f"searching {query!r} finds {sorted(found)}"
    for node_id, name in names.items():
        assert name.startswith(NAMES[node_id][0]) and name.startswith("HyperStyle ") and len(name) <= 48, name


# ------------------------------------------------------------------ wrong objects on HYPERSTYLE_* inputs

@pytest.fixture()
def nodes(pack, comfy_env):
    return pack.NODE_CLASS_MAPPINGS


def test_wrong_models_name_the_node_to_connect(nodes):
    (model, generator) = nodes["HyperStyleLoadModel"]().execute("hyperstyle_ffhq.safetensors")
    (w_encoder,) = nodes["HyperStyleLoadWEncoder"]().execute("faces_w_encoder.safetensors")
    image = torch.rand(1, 256, 256, 3)
    with pytest.raises(ValueError, match=r"^HyperStyle Encode: model needs a HyperStyle model but got a W-encoder; "
                                         r"connect the model output of HyperStyle Load Model to it$"):
        nodes["HyperStyleEncode"]().execute(w_encoder, w_encoder, image)
    with pytest.raises(ValueError, match=r"^HyperStyle Refine: model needs a HyperStyle model but got a StyleGAN2 "
                                         r"generator; connect the model output of HyperStyle Load Model to it$"):
        nodes["HyperStyleRefine"]().execute(generator, image, torch.zeros(1, 14, 512))
    with pytest.raises(ValueError, match=r"^HyperStyle Generate: generator needs a StyleGAN2 generator but got a "
                                         r"HyperStyle model; connect HyperStyle Load Generator \(or the generator "
                                         r"output of HyperStyle Load Model\) to it$"):
        nodes["HyperStyleGenerate"]().execute(model, torch.zeros(1, 14, 512))
    with pytest.raises(ValueError, match=r"^HyperStyle Generate: deltas needs weight deltas but got a Tensor; "
                                         r"connect the deltas output of HyperStyle Refine"):
        nodes["HyperStyleGenerate"]().execute(generator, torch.zeros(1, 14, 512), deltas=torch.zeros(1))


def _pack_inputs(cls) -> dict[str, tuple[str, bool]]:
    from hyperstyle_pack.nodes._types import PACK_TYPES
    found = {}
    for section in ("required", "optional"):
        for name, spec in cls.INPUT_TYPES().get(section, {}).items():
            if isinstance(spec[0], str) and spec[0] in PACK_TYPES:
                found[name] = (spec[0], section == "optional")
    return found


def test_every_node_checks_its_hyperstyle_inputs(nodes):
    """Each node taking HYPERSTYLE_* inputs stops before any work when one holds something else (here a string)."""
    from hyperstyle_pack.nodes._names import short_name
    checked = 0
    for node_id, cls in nodes.items():
        pack_inputs = _pack_inputs(cls)
        if not any(not optional for _, optional in pack_inputs.values()):
            continue
        spec = {**cls.INPUT_TYPES()["required"], **cls.INPUT_TYPES().get("optional", {})}
        kwargs = {name: ("not a model" if name in pack_inputs else None) for name in spec}
        with pytest.raises(ValueError, match=rf"^{re.escape(short_name(node_id))}: \w+ needs .* but got a str; "
                                             rf"connect .* to it$"):
            cls().execute(**kwargs)
        checked += 1
    assert checked == 16


def test_every_source_named_gives_that_type(pack):
    from hyperstyle_pack.nodes._names import NAMES
    from hyperstyle_pack.nodes._types import PACK_TYPES
    short_names = {short: node_id for node_id, (short, _) in NAMES.items()}
    for socket, expected in PACK_TYPES.items():
        named = [node_id for short, node_id in short_names.items() if re.search(rf"{re.escape(short)}\b",
                                                                                 expected.source)]
        assert named, socket
        for node_id in named:
            assert socket in pack.NODE_CLASS_MAPPINGS[node_id].RETURN_TYPES, (socket, node_id)


# ------------------------------------------------------------------ saved PNGs carry their workflow

def _text_chunks(path) -> dict[str, str]:
    with Image.open(path) as im:
        return dict(im.text)


def test_saved_pngs_carry_prompt_and_workflow_like_core_saveimage(pack, comfy_env):
    nodes = pack.NODE_CLASS_MAPPINGS
    for node_id in ("HyperStyleSaveImagesNamed", "HyperStyleSaveAnimation"):
        assert nodes[node_id].INPUT_TYPES()["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    images = torch.rand(2, 16, 16, 3)
    out = nodes["HyperStyleSaveImagesNamed"]().execute(images, "a.jpg\nb.jpg", "HyperStyle/folder", "",
                                                       prompt=PROMPT, extra_pnginfo={"workflow": WORKFLOW})
    frames = nodes["HyperStyleSaveAnimation"]().execute(images, "HyperStyle/frames", "png frames", 12.0, True,
                                                        prompt=PROMPT, extra_pnginfo={"workflow": WORKFLOW})
    written = out["result"][0].splitlines() + sorted(str(p) for p in Path(frames["result"][0]).iterdir())
    assert len(written) == 4
    for path in written:
        chunks = _text_chunks(path)
        assert set(chunks) == {"prompt", "workflow"}
        assert json.loads(chunks["prompt"]) == PROMPT and json.loads(chunks["workflow"]) == WORKFLOW
    assert frames["ui"] == {"images": [{"filename": f"frame_0000{i}.png", "subfolder": "HyperStyle/frames_00001_",
                                        "type": "output"} for i in (0, 1)]}


def test_disable_metadata_writes_plain_pngs(pack, comfy_env, monkeypatch):
    from hyperstyle_pack.nodes import _comfy
    monkeypatch.setattr(_comfy, "comfy_args", SimpleNamespace(disable_metadata=True))
    out = pack.NODE_CLASS_MAPPINGS["HyperStyleSaveImagesNamed"]().execute(
        torch.rand(1, 16, 16, 3), "a.jpg", "HyperStyle/folder", "", prompt=PROMPT, extra_pnginfo={"workflow": WORKFLOW})
    assert _text_chunks(out["result"][0]) == {}


_REAL_ARGS_SCRIPT = r"""
import json, os, sys
repo, comfyui, output, argv = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
sys.path.insert(0, os.path.join(repo, "tests"))
from conftest import import_pack
pack = import_pack()                                # before ComfyUI is importable: the pack uses its stand-ins
sys.path.insert(0, comfyui)
import comfy.options
comfy.options.enable_args_parsing()
sys.argv = ["main.py"] + argv
import comfy.cli_args                               # ComfyUI's own command line, parsed as main.py does
from hyperstyle_pack.nodes import _comfy
_comfy.comfy_args = comfy.cli_args.args
os.environ["HYPERSTYLE_OUTPUT_DIR"] = output
import torch
from PIL import Image
out = pack.NODE_CLASS_MAPPINGS["HyperStyleSaveImagesNamed"]().execute(
    torch.rand(1, 8, 8, 3), "a.jpg", "x", "", prompt={"1": {}}, extra_pnginfo={"workflow": {"nodes": []}})
print(json.dumps(dict(Image.open(out["result"][0]).text)))
"""


@pytest.mark.skipif(not (COMFYUI / "comfy" / "cli_args.py").is_file(),
                    reason=f"no ComfyUI checkout at {COMFYUI} (set HYPERSTYLE_COMFYUI)")
@pytest.mark.parametrize("argv, expected", [([], {"prompt": '{"1": {}}', "workflow": '{"nodes": []}'}),
                                            (["--disable-metadata"], {})])
def test_comfyui_disable_metadata_flag_is_honoured(tmp_path, argv, expected):
    run = subprocess.run([sys.executable, "-c", _REAL_ARGS_SCRIPT, str(REPO), str(COMFYUI), str(tmp_path),
                          json.dumps(argv)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == expected


def test_save_animation_previews_in_the_node_like_core(pack, comfy_env):
    save = pack.NODE_CLASS_MAPPINGS["HyperStyleSaveAnimation"]()
    out = save.execute(torch.rand(3, 16, 16, 3), "HyperStyle/anim", "webp", 6.0, True)
    assert out["ui"] == {"images": [{"filename": "anim_00001_.webp", "subfolder": "HyperStyle", "type": "output"}],
                         "animated": (True,)}
    assert (comfy_env / "output" / "HyperStyle" / "anim_00001_.webp").is_file()
    assert out["result"] == (str(comfy_env / "output" / "HyperStyle" / "anim_00001_.webp"),)
    single = save.execute(torch.rand(1, 16, 16, 3), "top", "gif")
    assert single["ui"] == {"images": [{"filename": "top_00001_.gif", "subfolder": "", "type": "output"}]}


def test_one_prefix_casing(pack):
    for cls in pack.NODE_CLASS_MAPPINGS.values():
        for spec in cls.INPUT_TYPES()["required"].values():
            default = spec[1].get("default") if len(spec) > 1 else None
            if isinstance(default, str) and "/" in default:
                assert default.startswith("HyperStyle/"), (cls.__name__, default)


# ------------------------------------------------------------------ wire colours (web extension)

_WIRES_RUNNER = r"""
globalThis.window = { LGraphCanvas: { link_type_colors: { IMAGE: "#64B5F6" } } };
const { app } = await import("./scripts/app.js");
await import("./extensions/hyperstyle/hyperstyle_wires.js");
const [extension] = app.extensions;
await extension.setup();
const links = window.LGraphCanvas.link_type_colors;
const initial = { ...links };
// A palette loading, as the frontend's loadLinkColorPalette does: every known type blanked, then the palette's own.
const blank = Object.fromEntries(Object.keys(links).map((type) => [type, ""]));
Object.assign(links, blank, { IMAGE: "#64B5F6", HYPERSTYLE_LATENT: "#123456" });
Object.assign(app.canvas.default_connection_color_byType, blank);
console.log(JSON.stringify({ name: extension.name, initial, after: { ...links },
                             slots: { ...app.canvas.default_connection_color_byType }, dirty: app.canvas.dirty }));
"""
_APP_STUB = """export const app = {
  extensions: [],
  registerExtension(extension) { this.extensions.push(extension); },
  canvas: { default_connection_color_byType: {}, setDirty() { this.dirty = true; } },
};
"""


def _pack_socket_types(pack) -> set[str]:
    types = set()
    for cls in pack.NODE_CLASS_MAPPINGS.values():
        types.update(t for t in cls.RETURN_TYPES if t.startswith("HYPERSTYLE_"))
    return types


def test_web_extension_is_registered_and_small(pack):
    assert (REPO / pack.WEB_DIRECTORY / WIRES_JS.name).resolve() == WIRES_JS.resolve()
    assert len(WIRES_JS.read_text().splitlines()) < 60


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the web extension")
def test_each_hyperstyle_type_keeps_its_own_wire_colour(pack, tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "app.js").write_text(_APP_STUB)
    (tmp_path / "extensions" / "hyperstyle").mkdir(parents=True)
    shutil.copy(WIRES_JS, tmp_path / "extensions" / "hyperstyle" / WIRES_JS.name)
    (tmp_path / "package.json").write_text('{"type": "module"}')
    (tmp_path / "run.js").write_text(_WIRES_RUNNER)
    run = subprocess.run(["node", "run.js"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    ours = {t: c for t, c in result["initial"].items() if t.startswith("HYPERSTYLE_")}
    assert set(ours) == _pack_socket_types(pack)
    assert len(set(ours.values())) == len(ours) and result["initial"]["IMAGE"] not in ours.values()
    assert all(re.fullmatch(r"#[0-9A-F]{6}", c) for c in ours.values())
    # A palette that blanks them keeps ours; a palette that names one of our types wins.
    assert result["after"] == {**ours, "IMAGE": "#64B5F6", "HYPERSTYLE_LATENT": "#123456"}
    assert result["slots"] == {**ours, "IMAGE": ""} and result["dirty"] and result["name"] == "HyperStyle.WireColours"
