"""Nodes with ComfyUI absent: registration and metadata, execution on recipe weights, bad inputs, no mutation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHARED

PHOTOS = SHARED / "data" / "photos"


def _photo(name: str, size: int | None = None) -> torch.Tensor:
    img = Image.open(PHOTOS / name).convert("RGB")
    if size:
        img = img.resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None]


@pytest.fixture()
def nodes(pack, comfy_env):
    return pack.NODE_CLASS_MAPPINGS


@pytest.fixture()
def loaded(nodes):
    model, generator = nodes["HyperStyleLoadModel"]().execute("hyperstyle_ffhq.safetensors")
    (w_encoder,) = nodes["HyperStyleLoadWEncoder"]().execute("faces_w_encoder.safetensors")
    return model, generator, w_encoder


def test_registration_and_metadata(pack):
    mappings, names = pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS
    assert set(mappings) == set(names)
    for node_id, cls in mappings.items():
        assert node_id.startswith("HyperStyle") and names[node_id].startswith("HyperStyle ")
        assert cls.CATEGORY.startswith("HyperStyle/") and cls.FUNCTION == "execute"
        assert cls.DESCRIPTION and len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)
        for section_name, section in cls.INPUT_TYPES().items():
            if section_name == "hidden":        # filled by ComfyUI (prompt, workflow), never shown
                continue
            for input_name, spec in section.items():
                assert spec[1].get("tooltip"), f"{node_id}.{input_name} has no tooltip"
        for t in cls.RETURN_TYPES:
            assert t in ("IMAGE", "STRING", "FLOAT") or t.startswith("HYPERSTYLE_")


def test_model_files_are_listed_by_kind(nodes):
    options = nodes["HyperStyleLoadModel"].INPUT_TYPES()["required"]["model_file"][0]
    assert "hyperstyle_ffhq.safetensors" in options and "toonify.safetensors" not in options
    assert "toonify.safetensors" in nodes["HyperStyleLoadGenerator"].INPUT_TYPES()["required"]["model_file"][0]


def test_loader_reuses_live_models_and_unload_forgets_them(nodes, pack):
    a = nodes["HyperStyleLoadGenerator"]().execute("toonify.safetensors")[0]
    b = nodes["HyperStyleLoadGenerator"]().execute("toonify.safetensors")[0]
    assert a is b
    images = torch.rand(1, 8, 8, 3)
    out = nodes["HyperStyleUnloadModels"]().execute(images)[0]
    assert out is images
    c = nodes["HyperStyleLoadGenerator"]().execute("toonify.safetensors")[0]
    assert c is not a


def test_generator_file_in_hyperstyle_loader_is_a_clear_error(nodes):
    with pytest.raises(ValueError, match=r"toonify\.safetensors is a StyleGAN2 generator file, but a HyperStyle "
                                         r"model is needed.*hyperstyle_ffhq\.safetensors"):
        nodes["HyperStyleLoadModel"]().execute("toonify.safetensors")


def test_original_pt_is_refused_before_running(nodes, models_dir):
    verdict = nodes["HyperStyleLoadModel"].VALIDATE_INPUTS("hyperstyle_ffhq.pt")
    assert "never unpickled" in verdict and "python -m hyperstyle_core convert hyperstyle_ffhq.pt" in verdict
    missing = nodes["HyperStyleLoadModel"].VALIDATE_INPUTS("nope.safetensors")
    assert "was not found in the hyperstyle model folders" in missing
    assert nodes["HyperStyleLoadModel"].VALIDATE_INPUTS("hyperstyle_ffhq.safetensors") is True


@pytest.mark.slow
def test_encode_refine_generate_matches_core(nodes, loaded):
    from hyperstyle_pack.hyperstyle_core import invert
    model, generator, w_encoder = loaded
    image = _photo("aligned_affleck.jpg", 256)
    before = image.clone()
    latent, recon = nodes["HyperStyleEncode"]().execute(model, w_encoder, image)
    deltas, final = nodes["HyperStyleRefine"]().execute(model, image, latent, iterations=2)
    assert torch.equal(image, before)                       # inputs are never mutated
    assert latent.shape == (1, 14, 512) and recon.shape == (1, 256, 256, 3)
    assert deltas.batch_size == 1 and final.shape == (1, 256, 256, 3)
    x = image.permute(0, 3, 1, 2) * 2 - 1
    core = invert(x, model, w_encoder, n_iters=2)
    assert torch.allclose(latent, core.latent, atol=1e-5)
    assert torch.allclose(final, ((core.final + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1), atol=1e-4)
    (rendered,) = nodes["HyperStyleGenerate"]().execute(generator, latent, deltas=deltas)
    assert torch.allclose(rendered, final, atol=1e-4)
    (plain,) = nodes["HyperStyleGenerate"]().execute(generator, latent, delta_strength=0.0, deltas=deltas)
    assert torch.allclose(plain, recon, atol=1e-4)
    _, every = nodes["HyperStyleRefine"]().execute(model, image, latent, iterations=2, output_all_iterations=True)
    assert every.shape[0] == 2 and torch.allclose(every[1], final[0], atol=1e-5)


@pytest.mark.slow
def test_batches_are_chunked_without_changing_results(nodes, loaded):
    model, _, w_encoder = loaded
    images = torch.cat([_photo("aligned_affleck.jpg", 256), _photo("aligned_johansson.jpg", 256),
                        _photo("aligned_damon.jpg", 256)])
    l_all, _ = nodes["HyperStyleEncode"]().execute(model, w_encoder, images, batch_size=4)
    l_one, _ = nodes["HyperStyleEncode"]().execute(model, w_encoder, images, batch_size=1)
    assert torch.allclose(l_all, l_one, atol=1e-5)
    d_all, _ = nodes["HyperStyleRefine"]().execute(model, images, l_all, iterations=1, batch_size=3)
    d_two, _ = nodes["HyperStyleRefine"]().execute(model, images, l_all, iterations=1, batch_size=2)
    assert d_all.batch_size == d_two.batch_size == 3
    assert all(torch.allclose(d_all[n], d_two[n], atol=1e-5) for n in d_all)


def test_grayscale_and_rgba_inputs_are_converted(nodes, loaded):
    model, _, w_encoder = loaded
    rgb = _photo("aligned_affleck.jpg", 256)
    gray = rgb.mean(-1, keepdim=True)
    rgba = torch.cat([rgb, torch.ones_like(gray)], -1)
    l_gray, _ = nodes["HyperStyleEncode"]().execute(model, w_encoder, gray)
    l_rgba, _ = nodes["HyperStyleEncode"]().execute(model, w_encoder, rgba)
    l_rgb, _ = nodes["HyperStyleEncode"]().execute(model, w_encoder, rgb)
    assert torch.allclose(l_rgba, l_rgb, atol=1e-5)
    assert l_gray.shape == l_rgb.shape and not torch.allclose(l_gray, l_rgb)


def test_tiny_and_malformed_images_are_clear_errors(nodes, loaded):
    model, _, w_encoder = loaded
    with pytest.raises(ValueError, match=r"HyperStyle Encode image is 16x16 pixels; HyperStyle needs at least 64x64"):
        nodes["HyperStyleEncode"]().execute(model, w_encoder, torch.rand(1, 16, 16, 3))
    with pytest.raises(ValueError, match="images have 2 channels"):
        nodes["HyperStyleEncode"]().execute(model, w_encoder, torch.rand(1, 256, 256, 2))
    with pytest.raises(ValueError, match=r"image 1 of 1 is 16x16 pixels; faces need at least 64x64"):
        nodes["HyperStyleAlignFace"]().execute(torch.rand(1, 16, 16, 3))


def test_256_deltas_on_a_1024_generator_is_a_clear_error(nodes, loaded, converted, models_dir):
    import shutil
    model, _, w_encoder = loaded
    shutil.copy(converted("stylegan2_1024"), models_dir / "stylegan2_1024_test.safetensors")
    (big,) = nodes["HyperStyleLoadGenerator"]().execute("stylegan2_1024_test.safetensors")
    image = _photo("aligned_affleck.jpg", 256)
    latent, _ = nodes["HyperStyleEncode"]().execute(model, w_encoder, image)
    deltas, _ = nodes["HyperStyleRefine"]().execute(model, image, latent, iterations=1)
    with pytest.raises(ValueError, match=r"made for a 256px generator, this one is 1024px"):
        nodes["HyperStyleGenerate"]().execute(big, latent, deltas=deltas)
    with pytest.raises(ValueError, match=r"made for a 256px generator, this one is 1024px"):
        nodes["HyperStyleTransferDeltas"]().execute(big, latent, deltas, "all tuned layers")


@pytest.mark.slow
def test_edit_sweep_and_transfer(nodes, loaded):
    model, generator, w_encoder = loaded
    image = torch.cat([_photo("aligned_affleck.jpg", 256), _photo("aligned_johansson.jpg", 256)])
    latent, _ = nodes["HyperStyleEncode"]().execute(model, w_encoder, image)
    deltas, _ = nodes["HyperStyleRefine"]().execute(model, image, latent, iterations=1)
    (age,) = nodes["HyperStyleLoadDirection"]().execute("age.safetensors")
    (edited,) = nodes["HyperStyleLatentEdit"]().execute(latent, age, 3.0)
    assert torch.allclose(edited - latent, 3.0 * age.vector.expand_as(latent), atol=1e-5)
    swept, swept_deltas = nodes["HyperStyleLatentEditSweep"]().execute(latent, age, -2.0, 2.0, 3, deltas)
    assert swept.shape[0] == 6 and swept_deltas.batch_size == 6
    assert torch.allclose(swept[1], latent[0]) and torch.allclose(swept_deltas["conv1"][4], deltas["conv1"][1])
    frames = nodes["HyperStyleGenerate"]().execute(generator, swept, deltas=swept_deltas)[0]
    assert frames.shape == (6, 256, 256, 3)
    (toon,) = nodes["HyperStyleLoadGenerator"]().execute("toonify.safetensors")
    (out,) = nodes["HyperStyleTransferDeltas"]().execute(toon, latent, deltas,
                                                          "toonify (official: 14,15,17,18,20,21,23,24)")
    (no_deltas,) = nodes["HyperStyleTransferDeltas"]().execute(toon, latent, deltas, "toonify (official: "
                                                               "14,15,17,18,20,21,23,24)", strength=0.0)
    assert out.shape == (2, 256, 256, 3) and not torch.allclose(out, no_deltas, atol=1e-3)


def test_save_and_load_deltas_and_latents(nodes, loaded, comfy_env):
    model, _, w_encoder = loaded
    image = _photo("aligned_affleck.jpg", 256)
    latent, _ = nodes["HyperStyleEncode"]().execute(model, w_encoder, image)
    deltas, _ = nodes["HyperStyleRefine"]().execute(model, image, latent, iterations=1)
    saved = nodes["HyperStyleSaveDeltas"]().execute(deltas, "hyperstyle/test")
    path = saved["result"][0]
    assert path.endswith("hyperstyle/test_00001_.safetensors")
    files = nodes["HyperStyleLoadDeltas"].INPUT_TYPES()["required"]["file"][0]
    assert "hyperstyle/test_00001_.safetensors" in files
    (back,) = nodes["HyperStyleLoadDeltas"]().execute("hyperstyle/test_00001_.safetensors")
    assert all(torch.equal(back[n], deltas[n]) for n in deltas)
    second = nodes["HyperStyleSaveDeltas"]().execute(deltas, "hyperstyle/test")["result"][0]
    assert second.endswith("test_00002_.safetensors")
    lat_path = nodes["HyperStyleSaveLatent"]().execute(latent, "hyperstyle/latent")["result"][0]
    (lat,) = nodes["HyperStyleLoadLatent"]().execute("hyperstyle/latent_00001_.safetensors")
    assert torch.equal(lat, latent) and lat_path.endswith("latent_00001_.safetensors")
    with pytest.raises(ValueError, match="must stay inside ComfyUI.s output folder"):
        nodes["HyperStyleSaveDeltas"]().execute(deltas, "../escape")


def test_interruption_stops_refinement(nodes, loaded, monkeypatch, pack):
    from hyperstyle_pack.nodes import _comfy
    model, _, w_encoder = loaded
    image = _photo("aligned_affleck.jpg", 256)
    latent, _ = nodes["HyperStyleEncode"]().execute(model, w_encoder, image)
    calls = []

    class Interrupted(Exception):
        pass

    def interrupt():
        calls.append(1)
        if len(calls) >= 2:
            raise Interrupted()
    monkeypatch.setattr(_comfy, "check_interrupt", interrupt)
    with pytest.raises(Interrupted):
        nodes["HyperStyleRefine"]().execute(model, image, latent, iterations=5)
    assert len(calls) == 2   # stopped after the second iteration, not at the end


def test_align_face_node_no_face_and_two_faces(nodes):
    car = _photo("car_image.jpg")
    with pytest.raises(ValueError, match=r"No face found in image 1 of 1"):
        nodes["HyperStyleAlignFace"]().execute(car)
    with pytest.raises(ValueError, match="No face found in any of the 1 image"):
        nodes["HyperStyleAlignFace"]().execute(car, on_no_face="skip")
    (passed, info) = nodes["HyperStyleAlignFace"]().execute(car, on_no_face="passthrough")
    assert passed.shape == (1, 256, 256, 3) and info.entries[0][1] is None
    a = Image.open(PHOTOS / "aligned_affleck.jpg").convert("RGB").resize((320, 320))
    b = Image.open(PHOTOS / "aligned_johansson.jpg").convert("RGB").resize((256, 256))
    canvas = Image.new("RGB", (640, 400), (40, 40, 40))
    canvas.paste(a, (10, 40))
    canvas.paste(b, (370, 70))
    photo = torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0)[None]
    crops, alignment = nodes["HyperStyleAlignFace"]().execute(photo, face="all")
    assert crops.shape == (2, 256, 256, 3) and len(alignment) == 2
    (pasted,) = nodes["HyperStylePasteBack"]().execute(photo, crops, alignment)
    assert pasted.shape == photo.shape
    err = (pasted - photo).abs()
    assert err.mean() < 0.02
    assert torch.equal(pasted[0, :5], photo[0, :5])          # far from both faces: untouched
    big = torch.nn.functional.interpolate(crops.movedim(-1, 1), size=(512, 512)).movedim(1, -1)
    (pasted_big,) = nodes["HyperStylePasteBack"]().execute(photo, big, alignment)
    assert (pasted_big - photo).abs().mean() < 0.02
    with pytest.raises(ValueError, match="3 faces for 2 aligned crop"):
        nodes["HyperStylePasteBack"]().execute(photo, crops[:1].repeat(3, 1, 1, 1), alignment)
