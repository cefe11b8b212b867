"""Folder processing (`hyperstyle run`): outputs and manifest, a corpus of bad inputs, resume after kill -9, flat
memory over 200 images. (The other folder commands, naming and setup errors: test_run_commands.py.)"""
from __future__ import annotations

import io
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from hyperstyle_core import AlignmentInfo, WeightDeltas, load
from hyperstyle_core.run.naming import output_names
from hyperstyle_core.run.options import RunOptions
from hyperstyle_core.run.runner import run_folder
from hyperstyle_core.cli import main

from run_helpers import FACE, records, synthetic_images, tiny_args, visible_files

log = logging.getLogger(__name__)     # measurements, shown with --log-cli-level=INFO


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny models (64px generator) plus tiny age/smile directions and a tiny 'toonify' generator."""
    from hyperstyle_core.testing import write_tiny_run_models
    return write_tiny_run_models(tmp_path_factory.mktemp("tiny_models"))



def png_bytes(width: int, height: int, bit_depth: int = 8, color_type: int = 2, raw: bytes = b"") -> bytes:
    """A PNG written by hand: any header (48-bit RGB, huge or zero dimensions), whatever pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def bad_input_corpus(folder: Path) -> dict[str, tuple[str, str | None]]:
    """Writes the corpus; returns file -> (status, code) for refusals or (\"ok\", text the note must contain)."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = Image.open(FACE).convert("RGB")
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    buf = io.BytesIO()
    photo.save(buf, "PNG")
    png = buf.getvalue()
    expect: dict[str, tuple[str, str | None]] = {}

    def write(name: str, data: bytes, status: str, code: str | None) -> None:
        (folder / name).write_bytes(data)
        expect[name] = (status, code)

    # refused: cannot be read
    write("text.jpg", b"this is not a picture\n", "error", "not_an_image")
    write("page.png", b"<!DOCTYPE html><html><body>quota exceeded</body></html>", "error", "not_an_image")
    write("empty.png", b"", "error", "empty")
    write("truncated.jpg", jpeg[:len(jpeg) // 3], "error", "truncated")
    write("truncated.png", png[:len(png) // 2], "error", "truncated")
    write("short_data.png", png_bytes(100, 100, raw=b"\x00" * 50), "error", "truncated")
    write("random.webp", np.random.default_rng(0).bytes(5000), "error", "not_an_image")
    write("signature_only.png", b"\x89PNG\r\n\x1a\n", "error", "not_an_image")
    write("zero_width.png", png_bytes(0, 100), "error", "not_an_image")
    broken = bytearray(jpeg)
    broken[20:400] = b"\xff" * 380
    write("corrupt_header.jpg", bytes(broken), "error", "not_an_image")
    bad_crc = bytearray(png)
    bad_crc[29] ^= 0xFF
    write("bad_crc.png", bytes(bad_crc), "error", "not_an_image")
    (folder / "broken_link.jpg").symlink_to(folder / "does_not_exist.jpg")
    expect["broken_link.jpg"] = ("error", "missing")
    # refused: what they are
    write("notes.txt", b"shot on a phone\n", "skipped", "not_an_image_type")
    write("meta.json", b"{}", "skipped", "not_an_image_type")
    write("no_extension", jpeg, "skipped", "not_an_image_type")
    Image.new("RGB", (32, 32), (128, 90, 80)).save(folder / "tiny.png")
    expect["tiny.png"] = ("skipped", "too_small")
    Image.new("RGB", (1, 1)).save(folder / "one_pixel.gif")
    expect["one_pixel.gif"] = ("skipped", "too_small")
    Image.new("RGB", (2000, 40)).save(folder / "strip.png")
    expect["strip.png"] = ("skipped", "too_small")
    write("huge.png", png_bytes(12000, 10000), "skipped", "too_large")          # 120 MP: our limit, not decoded
    write("bomb.png", png_bytes(40000, 40000), "skipped", "too_large")          # PIL's decompression-bomb error
    noise = np.random.default_rng(1).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "noise.png")
    expect["noise.png"] = ("skipped", "no_face")
    Image.new("RGB", (300, 200), (200, 180, 170)).save(folder / "blank.bmp")
    expect["blank.bmp"] = ("skipped", "no_face")
    # accepted after a conversion the manifest notes
    photo.convert("CMYK").save(folder / "cmyk.jpg", quality=90)
    expect["cmyk.jpg"] = ("ok", "CMYK converted to RGB")
    rgba = np.array(photo.convert("RGBA"))
    rgba[:40, :, 3] = 0
    Image.fromarray(rgba).save(folder / "rgba.png")
    expect["rgba.png"] = ("ok", "alpha composited over white")
    Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257).save(folder / "gray16.png")
    expect["gray16.png"] = ("ok", "16-bit grayscale")
    photo.convert("L").save(folder / "gray.jpg")
    expect["gray.jpg"] = ("ok", "grayscale")
    photo.convert("F").save(folder / "float.tif")
    expect["float.tif"] = ("ok", "float grayscale")
    rgb48 = (np.asarray(photo, dtype=np.uint16) * 257).astype(">u2")
    write("rgb48.png", png_bytes(photo.width, photo.height, 16, 2, b"".join(b"\x00" + r.tobytes() for r in rgb48)),
          "ok", None)
    exif = Image.Exif()
    exif[0x0112] = 6     # stored sideways: dlib finds the face only if the rotation is applied
    photo.rotate(90, expand=True).save(folder / "exif_rotated.jpg", exif=exif, quality=90)
    expect["exif_rotated.jpg"] = ("ok", "rotated per EXIF orientation 6")
    photo.convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.gif")
    expect["palette.gif"] = ("ok", None)
    photo.save(folder / "animated.gif", save_all=True, append_images=[photo.rotate(5), photo.rotate(-5)])
    expect["animated.gif"] = ("ok", "first of 3 frames")
    write("dup.jpg", jpeg, "ok", None)     # same stem as dup.png
    write("dup.png", png, "ok", None)
    return expect


# ---------------------------------------------------------------------------------------------- tests


def test_run_writes_every_output_and_resumes(tiny, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    names = synthetic_images(src, 5)
    code = main(["run", "--input", str(src), "--output", str(out), *tiny_args(tiny, "--no-align", "--batch-size", "2"),
                 "--edit", "age=+3,smile=-1", "--transfer", "toonify.safetensors", "--transfer-latent", "w"])
    assert code == 0
    assert "5 files: 5 ok, 0 skipped, 0 errors" in capsys.readouterr().out
    expected = {f"{Path(n).stem}_{kind}" for n in names for kind in (
        "inversion.png", "age.png", "smile.png", "toonify.png", "latent.safetensors", "deltas.safetensors")}
    assert visible_files(out) == expected     # --no-align: no aligned crop, nothing to paste back
    rows = records(out)
    assert [r["file"] for r in rows] == names and all(r["status"] == "ok" for r in rows)
    assert set(rows[0]) >= {"file", "status", "out", "outputs", "timings", "size", "mtime_ns"}
    assert set(rows[0]["timings"]) >= {"read", "model", "write", "total"}
    with Image.open(out / "img_000_inversion.png") as im:
        assert im.size == (64, 64) and im.mode == "RGB"
    deltas = WeightDeltas.load(out / "img_000_deltas.safetensors")
    deltas.check_compatible(load(tiny / "hyperstyle_ffhq.safetensors", device="cpu").generator)
    assert not np.array_equal(np.asarray(Image.open(out / "img_000_age.png")),
                              np.asarray(Image.open(out / "img_000_smile.png")))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] == 5 and summary["images_per_second"] > 0

    # Nothing to do on a re-run: no new manifest lines, no model work.
    assert main(["run", "--input", str(src), "--output", str(out), *tiny_args(tiny, "--no-align"),
                 "--edit", "age=+3,smile=-1", "--transfer", "toonify", "--transfer-latent", "w"]) == 0
    assert "0 ok, 0 skipped, 0 errors, 5 already done" in capsys.readouterr().out
    assert len(records(out)) == 5
    # A deleted output or a new edit makes just those images run again.
    (out / "img_002_toonify.png").unlink()
    assert main(["run", "--input", str(src), "--output", str(out), *tiny_args(tiny, "--no-align"),
                 "--edit", "age=+3,smile=-1", "--transfer", "toonify", "--transfer-latent", "w"]) == 0
    assert [r["file"] for r in records(out)[5:]] == ["img_002.png"]
    assert (out / "img_002_toonify.png").exists()


@pytest.mark.slow
def test_bad_input_corpus_is_recorded_and_the_run_completes(tiny, tmp_path):
    src, out = tmp_path / "corpus", tmp_path / "out"
    expect = bad_input_corpus(src)
    assert sum(status != "ok" for status, _ in expect.values()) >= 20
    code = main(["run", "--input", str(src), "--output", str(out), *tiny_args(tiny, "--batch-size", "4")])
    assert code == 1     # some inputs are errors; the run still finished every file
    rows = records(out)
    assert sorted(r["file"] for r in rows) == sorted(expect)     # exactly one line per input
    for r in rows:
        status, detail = expect[r["file"]]
        assert r["status"] == status, (r["file"], r)
        if status == "ok":
            if detail:
                assert detail in r["note"], r
            assert set(r["outputs"]) == set(output_names(r["out"], RunOptions())) and all(
                (out / n).exists() for n in r["outputs"])
        else:
            assert r["code"] == detail and len(r["reason"]) > 20, r
            assert "out" not in r
    by_file = {r["file"]: r for r in rows}
    assert {by_file["dup.jpg"]["out"], by_file["dup.png"]["out"]} == {"dup_jpg", "dup_png"}
    assert "above the limit of 80" in by_file["huge.png"]["reason"] and "--max-pixels" in by_file["huge.png"]["reason"]
    assert "truncated" in by_file["truncated.jpg"]["reason"] and "Copy it again" in by_file["truncated.jpg"]["reason"]
    assert "No face found in noise.png" in by_file["noise.png"]["reason"]
    info = AlignmentInfo.from_dict(json.loads((out / "exif_rotated_alignment.json").read_text()))
    assert (info.source_width, info.source_height) == (512, 512)
    with Image.open(out / "cmyk_pasted.png") as im:     # pasted back at the photo's size
        assert im.size == (512, 512)
    assert not list(out.glob("*.partial")) and not list(out.glob(".*.partial"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] + summary["skipped"] + summary["error"] == len(expect)

    # Re-run: errors are tried again (one new line each), skipped and finished files are left alone.
    (src / "text.jpg").write_bytes((src / "dup.jpg").read_bytes())     # the user fixed one file
    assert main(["run", "--input", str(src), "--output", str(out), *tiny_args(tiny)]) == 1
    new = {r["file"]: r for r in records(out)[len(rows):]}
    assert set(new) == {f for f, (status, _) in expect.items() if status == "error"}
    assert new["text.jpg"]["status"] == "ok" and new["truncated.jpg"]["status"] == "error"


@pytest.mark.slow
def test_kill_9_then_rerun_gives_exactly_the_full_output_set(tiny, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    names = synthetic_images(src, 30)
    args = ["run", "--input", str(src), "--output", str(out), *tiny_args(tiny, "--no-align", "--batch-size", "2")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "hyperstyle_core", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.exists() and len(manifest.read_bytes().splitlines()) >= 4:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    done_before = {r["file"] for r in records(out) if r["status"] == "ok"}
    assert 4 <= len(done_before) < 30
    # What a kill in the middle of a write leaves: a temp file and a torn manifest line.
    (out / ".img_029_inversion.png.x1y2z3.partial").write_bytes(b"\x89PNG half")
    with open(manifest, "ab") as f:
        f.write(b'{"file": "img_029.png", "stat')

    assert main(args) == 0
    expected = {f"{Path(n).stem}_{kind}" for n in names
                for kind in ("inversion.png", "latent.safetensors", "deltas.safetensors")}
    assert visible_files(out) == expected
    assert not list(out.rglob("*.partial"))
    ok_lines: dict[str, int] = {}
    for r in records_tolerant(manifest):
        assert r["status"] == "ok"
        ok_lines[r["file"]] = ok_lines.get(r["file"], 0) + 1
    assert ok_lines == {n: 1 for n in names}     # exactly one ok record per input, before and after the kill
    for n in names:     # every output is complete
        with Image.open(out / f"{Path(n).stem}_inversion.png") as im:
            im.load()
        WeightDeltas.load(out / f"{Path(n).stem}_deltas.safetensors")


def records_tolerant(manifest: Path) -> list[dict]:
    rows = []
    for line in manifest.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
@pytest.mark.slow
def test_memory_stays_flat_over_200_images(tiny, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    synthetic_images(src, 200, size=256)
    rss: dict[int, float] = {}

    def sample(record, summary):
        done = summary.ok + summary.error + summary.skipped
        if done in (10, 200):
            rss[done] = _rss_mib()

    summary = run_folder(src, out, RunOptions(models=tiny, align=False, iterations=1, batch_size=4, device="cpu"),
                         on_record=sample)
    assert summary.ok == 200
    growth = rss[200] - rss[10]
    log.info("RSS after 10 images %.1f MiB, after 200 %.1f MiB (growth %+.1f MiB)", rss[10], rss[200], growth)
    # Keeping any per-image result alive (even just the tiny model's 0.33 MB of deltas) would add > 60 MB over the
    # 190 images; allocator noise is a few MB.
    assert growth < 25, rss
