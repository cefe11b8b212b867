"""Hostile files and names against the folder runner and the CLI: a planted manifest, undecodable and
escape-sequence file names, symlink loops, output folders that cannot be written, NaN/Inf values, SIGTERM."""
from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO
from PIL import Image
from safetensors import safe_open

from hyperstyle_core import WeightDeltas
from hyperstyle_core.cli import main
from hyperstyle_core.io.latents import load_latent_file, save_latent
from hyperstyle_core.run import manifest as manifest_module
from hyperstyle_core.run import runner as runner_module
from hyperstyle_core.run import worker as worker_module     # the steps of a batch (every engine)
from hyperstyle_core.run.manifest import OutputFolderError, read_manifest
from hyperstyle_core.run.naming import is_plain_name
from hyperstyle_core.run.options import LOCK_NAME, RunOptions, parse_edits
from hyperstyle_core.run.runner import run_folder

UNDECODABLE = sys.platform.startswith("linux")     # macOS and Windows refuse names that are not valid text


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny models (64 px generator) and a tiny 'age' direction."""
    from hyperstyle_core import convert
    from hyperstyle_core.testing import write_tiny_models

    folder = tmp_path_factory.mktemp("tiny_models")
    write_tiny_models(folder)
    torch.save(torch.randn(1, 32, generator=torch.Generator().manual_seed(1)), folder / "age.pt")
    convert(folder / "age.pt", folder)
    (folder / "age.pt").unlink()
    return folder


def picture(path: Path, seed: int = 0, size: int = 96) -> Path:
    small = np.random.default_rng(seed).integers(0, 255, (6, 6, 3), dtype=np.uint8)
    Image.fromarray(small).resize((size, size), Image.BICUBIC).save(path)
    return path


def records(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "manifest.jsonl").read_text("utf-8").splitlines() if line.strip()]


def tiny_args(models: Path, *extra: str) -> list[str]:
    return ["--models", str(models), "--device", "cpu", "--iterations", "1", "--quiet", *extra]


def no_model_options(**extra) -> RunOptions:
    """Read and check every input, write nothing, load no model: for tests about listing and recording."""
    return RunOptions(align=False, products=frozenset({"aligned"}), device="cpu", **extra)


# ---------------------------------------------------------------------------------------------- 1: the manifest


def test_is_plain_name():
    for good in ("a", "a.b", "..a", "a..", "photo_jpg_2", "ü ö", "...png"):
        assert is_plain_name(good), good
    for bad in (None, 5, "", ".", "..", "../x", "a/b", "/abs", "/", "a\0b", "bad\udcff"):
        assert not is_plain_name(bad), bad


def test_a_planted_manifest_cannot_move_outputs_out_of_the_folder(tiny, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    picture(src / "a.png")
    picture(src / "b.png", seed=1)
    out.mkdir()
    elsewhere = tmp_path / "elsewhere" / "deep" / "evil"
    planted = [{"file": "a.png", "status": "error", "out": "../escaped"},
               {"file": "b.png", "status": "error", "out": str(elsewhere)}]
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in planted), "utf-8")
    assert main(["run", "--input", str(src), "--output", str(out), *tiny_args(tiny, "--no-align")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]     # nothing escaped, no parents made
    rows = {r["file"]: r for r in records(out)[len(planted):]}
    assert rows["a.png"]["out"] == "a" and rows["b.png"]["out"] == "b"
    assert (out / "a_inversion.png").exists() and (out / "b_inversion.png").exists()


@pytest.mark.parametrize("planted", ["manifest.jsonl", LOCK_NAME])
def test_a_planted_link_in_the_output_folder_is_never_written_through(tiny, tmp_path, planted, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    picture(src / "a.png")
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (out / planted).symlink_to(victim)
    assert main(["run", "--input", str(src), "--output", str(out), *tiny_args(tiny, "--no-align")]) == 2
    assert victim.read_text() == "keep me\n"
    assert f"{planted} is a symbolic link; remove it" in capsys.readouterr().err


def test_malformed_manifest_lines_are_ignored(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    picture(src / "a.png")
    out.mkdir()
    with open(out / "manifest.jsonl", "w", encoding="utf-8") as f:
        f.write("[" * 100_000 + "\n")                    # nested too deep for the JSON parser
        f.write('{"file": "a.png", "size": ' + "1" * 5000 + "}\n")     # an integer Python refuses to read
        f.write('{"file": ["a.png"], "out": "../list"}\n"just a string"\n{"file": "a.png", "out": {"x": 1}}\n')
    assert read_manifest(out / "manifest.jsonl") == {"a.png": {"file": "a.png", "out": {"x": 1}}}  # data, checked later
    summary = run_folder(src, out, no_model_options())
    assert summary.ok == 1
    assert json.loads((out / "manifest.jsonl").read_text("utf-8").splitlines()[-1])["file"] == "a.png"


# ---------------------------------------------------------------------------------------------- 2, 3: names, links


@pytest.mark.skipif(not UNDECODABLE, reason="the file system must accept names that are not valid UTF-8")
def test_a_name_that_is_not_utf8_is_processed_recorded_and_resumed(tiny, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    bad = os.fsdecode(b"bad\xff.png")
    picture(src / bad)
    picture(src / "z.png", seed=1)     # after it in name order: must still be processed
    options = RunOptions(models=tiny, align=False, iterations=1, batch_size=2, device="cpu")
    summary = run_folder(src, out, options)
    assert (summary.ok, summary.error) == (2, 0)
    text = (out / "manifest.jsonl").read_bytes().decode("utf-8")     # valid UTF-8 JSON lines
    rows = [json.loads(line) for line in text.splitlines()]
    assert [r["file"] for r in rows] == ["bad\\xff.png", "z.png"]
    assert rows[0]["out"] == "bad_xff" and rows[0]["status"] == "ok"
    assert {p.name for p in out.iterdir() if p.name.startswith("bad")} == {
        "bad_xff_inversion.png", "bad_xff_latent.safetensors", "bad_xff_deltas.safetensors"}
    with safe_open(str(out / "bad_xff_latent.safetensors"), "pt") as f:
        assert f.metadata()["source_image"] == "bad\\xff.png"
    again = run_folder(src, out, options)     # resumes: both files are done
    assert (again.already_done, again.ok) == (2, 0) and len(records(out)) == 2


def test_a_symlink_loop_is_that_entrys_own_record(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    picture(src / "a.png")
    (src / "loop.png").symlink_to("loop.png")
    (src / "ring1.jpg").symlink_to("ring2.jpg")
    (src / "ring2.jpg").symlink_to("ring1.jpg")
    summary = run_folder(src, out, no_model_options())
    assert (summary.ok, summary.error) == (1, 3)
    by_file = {r["file"]: r for r in records(out)}
    assert by_file["a.png"]["status"] == "ok"
    for name in ("loop.png", "ring1.jpg", "ring2.jpg"):
        assert by_file[name]["status"] == "error" and by_file[name]["code"] == "unreadable", by_file[name]
        assert "symbolic links" in by_file[name]["reason"]


def test_escape_sequences_in_names_reach_the_terminal_escaped(tiny, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    hostile = "\x1b[2J\x1b]0;owned\x07evil\u202egnp.txt"
    (src / hostile).write_text("not a photo")
    assert main(["run", "--input", str(src), "--output", str(out), *tiny_args(tiny, "--no-align")]) == 0
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "\u202e" not in err
    assert "skipped: \\x1b[2J\\x1b]0;owned\\x07evil\\u202egnp.txt: " in err
    assert records(out)[0]["file"] == hostile     # the manifest keeps the real name (JSON escapes it)


# ---------------------------------------------------------------------------------------------- 8: output folder


def _one_line_error(err: str, *parts: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in lines[0], lines[0]


def test_output_below_a_regular_file_is_a_setup_error(tiny, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    picture(src / "a.png")
    (tmp_path / "file.txt").write_text("x")
    code = main(["run", "--input", str(src), "--output", str(tmp_path / "file.txt" / "out"), *tiny_args(tiny)])
    assert code == 2
    _one_line_error(capsys.readouterr().err, "cannot write to the output folder", "is a file, not a folder")


def test_read_only_output_folder_is_a_setup_error(tiny, tmp_path, monkeypatch, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    picture(src / "a.png")
    out.mkdir()

    def read_only(path, *args, **kwargs):     # what open() says on a read-only mount (root may write anywhere)
        raise OSError(errno.EROFS, "Read-only file system", str(path))
    monkeypatch.setattr(manifest_module, "_open_no_follow", read_only)
    assert main(["run", "--input", str(src), "--output", str(out), *tiny_args(tiny)]) == 2
    _one_line_error(capsys.readouterr().err, f"output folder {out}", "read-only file system")


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_while_writing_the_manifest_or_summary_stops_with_exit_2(tiny, tmp_path, monkeypatch, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "notes.txt").write_text("no picture: recorded as skipped without model work")
    with monkeypatch.context() as m:
        m.setattr(manifest_module.os, "fsync", _enospc)
        assert main(["run", "--input", str(src), "--output", str(tmp_path / "o1"), *tiny_args(tiny)]) == 2
    _one_line_error(capsys.readouterr().err, "writing manifest.jsonl", "the disk is full")
    with monkeypatch.context() as m:
        m.setattr(runner_module, "atomic_path", _enospc)
        assert main(["run", "--input", str(src), "--output", str(tmp_path / "o2"), *tiny_args(tiny)]) == 2
    _one_line_error(capsys.readouterr().err, "writing summary.json", "the disk is full")
    assert records(tmp_path / "o2")[0]["status"] == "skipped"     # what finished stays recorded


def test_disk_full_while_writing_outputs_stops_the_run(tiny, tmp_path, monkeypatch):
    from hyperstyle_core.run import steps
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    picture(src / "a.png")
    picture(src / "b.png", seed=1)
    monkeypatch.setattr(steps, "atomic_path", _enospc)
    with pytest.raises(OutputFolderError, match="writing the outputs of a.png.*the disk is full"):
        run_folder(src, out, RunOptions(models=tiny, align=False, iterations=1, batch_size=2, device="cpu"))
    assert not (out / "manifest.jsonl").read_text()     # not 2 "write_failed" records: the run stopped


# ---------------------------------------------------------------------------------------------- 13: NaN and Inf


def _float_tiff(path: Path, bad: float) -> None:
    arr = np.random.default_rng(0).random((96, 96)).astype(np.float32)
    arr[10, 10] = bad
    Image.fromarray(arr).save(path)     # float32 2-D: mode F


def test_non_finite_inputs_and_outputs_are_errors(tiny, tmp_path, monkeypatch):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    picture(src / "face.png")
    _float_tiff(src / "nan.tif", float("nan"))
    _float_tiff(src / "inf.tif", float("inf"))
    summary = run_folder(src, out, RunOptions(models=tiny, align=False, iterations=1, device="cpu"))
    by_file = {r["file"]: r for r in records(out)}
    assert summary.ok == 1 and by_file["face.png"]["status"] == "ok"
    for name in ("nan.tif", "inf.tif"):
        assert (by_file[name]["status"], by_file[name]["code"]) == ("error", "non_finite"), by_file[name]
        assert "NaN or infinite pixel values" in by_file[name]["reason"]

    # Saved latents: a, b and e are fine, c holds a NaN latent, d NaN deltas; a's rendering goes NaN.
    latents = tmp_path / "latents"
    latents.mkdir()
    tensors = load_latent_file(out / "face_latent.safetensors")
    deltas = WeightDeltas.load(out / "face_deltas.safetensors")
    for stem in "abcde":
        latent = tensors["latent"].clone()
        if stem == "c":
            latent[0, 0, 0] = float("nan")
        save_latent(latents / f"{stem}_latent.safetensors", latent)
        (deltas * float("inf") if stem == "d" else deltas).save(latents / f"{stem}_deltas.safetensors")
    real_render = worker_module.render

    def render_a_nan(batch, opts, models):
        rendered = real_render(batch, opts, models)
        for i, item in enumerate(batch):
            if item.file.key == "a_latent.safetensors":
                rendered.edits["age"][i, :, 0, 0] = float("nan")
        return rendered
    monkeypatch.setattr(worker_module, "render", render_a_nan)
    edited = tmp_path / "edited"
    options = RunOptions(models=tiny, align=False, edits=parse_edits("age=1"), products=frozenset({"edits"}),
                         read_latents=True, batch_size=4, device="cpu", pattern="*_latent.safetensors")
    summary = run_folder(latents, edited, options)
    by_file = {r["file"]: r for r in records(edited)}
    assert (summary.ok, summary.error) == (2, 3)
    assert {f for f, r in by_file.items() if r["status"] == "ok"} == {"b_latent.safetensors", "e_latent.safetensors"}
    assert by_file["a_latent.safetensors"]["code"] == "non_finite_output"
    assert "NaN or infinite values for a_latent.safetensors (age)" in by_file["a_latent.safetensors"]["reason"]
    for stem in "cd":     # refused by the file readers (bad_latent) or by the runner's own check (non_finite)
        record = by_file[f"{stem}_latent.safetensors"]
        assert record["code"] in ("bad_latent", "non_finite") and "NaN" in record["reason"], record
        assert f"{stem}_" in record["reason"], record
    assert sorted(p.name for p in edited.glob("*.png")) == ["b_age.png", "e_age.png"]     # nothing for the others


# ---------------------------------------------------------------------------------------------- SIGTERM


def test_sigterm_says_what_was_finished(tiny, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(12):
        picture(src / f"img_{i:02d}.png", seed=i)
    args = ["run", "--input", str(src), "--output", str(out), *tiny_args(tiny, "--no-align", "--batch-size", "1")]
    proc = subprocess.Popen([sys.executable, "-m", "hyperstyle_core", *args], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.exists() and manifest.read_bytes().count(b"\n") >= 1:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be terminated"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = err.decode()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    done = sum(r["status"] == "ok" for r in records(out))
    assert 1 <= done < 12
    said = re.search(r"stopped after (\d+) of 12 files to do \((\d+) ok, 0 skipped, 0 errors\); finished files are "
                     r"recorded in ", err)
    assert said and said[1] == said[2], err
    assert int(said[1]) in (done, done - 1)     # a signal between a manifest line and the count: one behind
    assert "terminated (SIGTERM); run the same command again to continue where it stopped" in err
