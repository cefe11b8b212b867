"""`hyperstyle run --engine ray` (run.ray_engine) on a local Ray instance: the embedded engine's outputs and records,
resume across engines after a killed driver, a killed worker retried; plus the pieces that need no Ray."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO
from PIL import Image
from safetensors.torch import load_file

from hyperstyle_core.cli import main
from hyperstyle_core.io.folders import InputFile
from hyperstyle_core.run.input_list import input_list_groups
from hyperstyle_core.run.naming import assign_output_stems
from hyperstyle_core.run.options import RunOptions
from hyperstyle_core.run.ray_engine import KILL_ONCE_ENV, RayOptions, run_folder_on_ray
from hyperstyle_core.run.runner import run_folder
from hyperstyle_core.run.work import FileResult

ray = pytest.importorskip("ray", reason="needs Ray: pip install -r requirements-ray.txt")

VOLATILE = {"time", "run", "timings"}     # what differs between any two runs


@pytest.fixture(scope="module")
def kill_marker(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fault") / "kill_once.txt"


@pytest.fixture(scope="module", autouse=True)
def local_ray(kill_marker):
    """One local Ray instance for the module; every worker sees the kill-once marker's path."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR",
             runtime_env={"env_vars": {KILL_ONCE_ENV: str(kill_marker)}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from hyperstyle_core.testing import write_tiny_models
    folder = tmp_path_factory.mktemp("tiny_models")
    write_tiny_models(folder)
    return folder


def synthetic_images(folder: Path, n: int, size: int = 80) -> list[str]:
    """n smooth random pictures (aligned crops for runs without alignment)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        names.append(f"img_{i:03d}.png")
        small = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size, size), Image.BICUBIC).save(folder / names[-1])
    return names


def add_bad_files(folder: Path) -> dict[str, tuple[str, str]]:
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_bytes(b"this is not a picture\n")
    (folder / "notes.txt").write_bytes(b"shot on a phone\n")
    Image.new("RGB", (32, 32)).save(folder / "tiny.png")
    return {"empty.png": ("error", "empty"), "text.jpg": ("error", "not_an_image"),
            "notes.txt": ("skipped", "not_an_image_type"), "tiny.png": ("skipped", "too_small")}


def options(models: Path, batch_size: int = 1) -> RunOptions:
    return RunOptions(models=models, align=False, iterations=1, batch_size=batch_size, device="cpu")


def records(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "manifest.jsonl").read_text().splitlines() if line.strip()]


def outputs(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in folder.iterdir() if not p.name.startswith(".")
            and p.name not in ("manifest.jsonl", "summary.json")}


def assert_no_partial_files(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".partial")]


# ---------------------------------------------------------------------------------------------- with Ray


@pytest.mark.slow
def test_ray_engine_writes_what_the_embedded_engine_writes(tiny, tmp_path):
    src = tmp_path / "in"
    synthetic_images(src, 3)
    bad = add_bad_files(src)
    # The same torch thread count on both sides (2: the actor's CPUs), so that even float sums agree bit for bit
    # (parallel test workers run the driver with fewer threads).
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        embedded = run_folder(src, tmp_path / "embedded", options(tiny))
    finally:
        torch.set_num_threads(threads)
    on_ray = run_folder_on_ray(src, tmp_path / "ray", options(tiny), RayOptions(actors=1, cpus_per_actor=2))
    assert (on_ray.ok, on_ray.skipped, on_ray.error, on_ray.codes) == (embedded.ok, embedded.skipped, embedded.error,
                                                                      embedded.codes) == (3, 2, 2, on_ray.codes)
    ours, theirs = outputs(tmp_path / "ray"), outputs(tmp_path / "embedded")
    assert set(ours) == set(theirs) and len(ours) == 3 * 3
    for name, path in ours.items():
        if name.endswith(".safetensors"):
            a, b = load_file(str(path)), load_file(str(theirs[name]))
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
        assert path.read_bytes() == theirs[name].read_bytes(), name
    by_file = {r["file"]: {k: v for k, v in r.items() if k not in VOLATILE} for r in records(tmp_path / "ray")}
    expected = {r["file"]: {k: v for k, v in r.items() if k not in VOLATILE} for r in records(tmp_path / "embedded")}
    assert by_file == expected
    assert {f: (by_file[f]["status"], by_file[f]["code"]) for f in bad} == bad
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["ok"] == 3 and summary["images_per_second"] > 0
    assert_no_partial_files(tmp_path / "ray")


@pytest.mark.slow
def test_a_stopped_run_resumes_with_either_engine(tiny, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    names = synthetic_images(src, 5)

    def stop_after(n: int):
        def on_record(record, summary):
            if summary.ok >= n:
                raise KeyboardInterrupt
        return on_record

    with pytest.raises(KeyboardInterrupt):      # the Ray driver stops after 2 records
        run_folder_on_ray(src, out, options(tiny, 2), RayOptions(actors=2), on_record=stop_after(2))
    assert len(records(out)) == 2
    with pytest.raises(KeyboardInterrupt):      # the embedded engine goes on, and stops after 1 more
        run_folder(src, out, options(tiny, 2), on_record=stop_after(1))
    assert len(records(out)) == 3
    summary = run_folder_on_ray(src, out, options(tiny, 2), RayOptions(actors=2))     # Ray finishes the rest
    assert summary.ok == 2 and summary.already_done == 3
    rows = records(out)
    assert sorted(r["file"] for r in rows) == names and all(r["status"] == "ok" for r in rows)
    assert set(outputs(out)) == {f"{Path(n).stem}_{kind}" for n in names
                                 for kind in ("inversion.png", "latent.safetensors", "deltas.safetensors")}
    assert_no_partial_files(out)
    assert run_folder(src, out, options(tiny, 2)).already_done == 5     # and the embedded engine agrees


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_the_run_completes(tiny, tmp_path, kill_marker):
    src, out = tmp_path / "in", tmp_path / "out"
    names = synthetic_images(src, 4)
    kill_marker.write_text("img_001.png")     # the actor dies (os._exit) when about to process it, once
    summary = run_folder_on_ray(src, out, options(tiny, 2), RayOptions(actors=1, max_restarts=2,
                                                                       max_task_retries=2))
    assert not kill_marker.exists()     # the worker was killed
    assert summary.ok == 4
    rows = records(out)
    assert sorted(r["file"] for r in rows) == names and all(r["status"] == "ok" for r in rows)
    assert len(outputs(out)) == 4 * 3
    for n in names:
        Image.open(out / f"{Path(n).stem}_inversion.png").load()
        load_file(str(out / f"{Path(n).stem}_deltas.safetensors"))
    assert_no_partial_files(out)


@pytest.mark.slow
def test_cli_runs_an_input_list_on_ray(tiny, tmp_path, capsys):
    src = tmp_path / "in"
    names = synthetic_images(src, 2)
    listing = tmp_path / "list.txt"
    listing.write_text("# the photos\n" + "".join(f"{src / n}\n" for n in names) + f"\n{src / 'gone.png'}\n")
    out = tmp_path / "out"
    code = main(["run", "--input-list", str(listing), "--output", str(out), "--models", str(tiny), "--device", "cpu",
                 "--iterations", "1", "--no-align", "--quiet", "--engine", "ray", "--actors", "1"])
    assert code == 1      # gone.png is an error of its own, not a reason to stop
    assert "3 files: 2 ok, 0 skipped, 1 errors" in capsys.readouterr().out
    by_file = {r["file"]: r for r in records(out)}
    assert by_file[(src / "gone.png").as_posix()]["code"] == "missing"
    assert all(by_file[(src / n).as_posix()]["status"] == "ok" for n in names)


# ---------------------------------------------------------------------------------------------- without Ray


def test_without_ray_the_engine_says_how_to_install_it(tiny, tmp_path, capsys, monkeypatch):
    src = tmp_path / "in"
    synthetic_images(src, 1)
    monkeypatch.setitem(sys.modules, "ray", None)      # import ray -> ImportError
    code = main(["run", "--input", str(src), "--output", str(tmp_path / "out"), "--models", str(tiny), "--quiet",
                 "--engine", "ray"])
    assert code == 2 and "pip install -r requirements-ray.txt" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_importing_the_package_and_the_engine_does_not_import_ray():
    code = ("import sys, hyperstyle_core, hyperstyle_core.cli.commands, hyperstyle_core.run.ray_engine; "
            "assert 'ray' not in sys.modules, 'ray was imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_a_file_result_survives_the_trip_between_processes_as_json():
    """What an actor sends back (FileResult.to_dict as JSON) reads back as the same result; a status that is none
    of ok / skipped / error is refused."""
    result = FileResult("photos/a\\xffb.jpg", "skipped", "no_face", "No face found", notes=("EXIF rotation",),
                        timings={"read": 0.01, "total": 0.5}, mode="saved", written=())
    assert FileResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    with pytest.raises(ValueError, match="status 'done'; expected one of ok, skipped, error"):
        FileResult.from_dict({**result.to_dict(), "status": "done"})


def test_ray_options_are_checked():
    for bad, message in [(RayOptions(actors=0), "actors must be an integer of at least 1"),
                         (RayOptions(gpus_per_actor=-1), "gpus_per_actor must be a number >= 0"),
                         (RayOptions(address="somewhere"), "give auto .*ray://HOST:PORT")]:
        with pytest.raises(ValueError, match=message):
            bad.check()


def test_an_input_list_is_named_in_groups_as_one_set(tmp_path):
    entries = [f"{d}/{stem}{ext}" for d in ("a", "b", "c") for stem, ext in
               [("x", ".jpg"), ("x", ".png"), ("X_jpg", ".png"), ("x_jpg", ".webp"), ("y", ".jpg"), ("z_1", ".png"),
                ("Z", ".jpg"), ("w", ".png")]]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(entries + entries[:3]) + "\n")     # repeated paths are taken once
    whole = [InputFile(e, Path(e)) for e in entries]
    expected = assign_output_stems(whole, RunOptions())
    groups = list(input_list_groups(listing, group_size=5))
    assert len(groups) > 1 and sorted(i.key for g in groups for i in g) == sorted(entries)
    named = {k: v for g in groups for k, v in assign_output_stems(g, RunOptions()).items()}
    assert named == expected
    with pytest.raises(FileNotFoundError, match="input list .* does not exist"):
        input_list_groups(tmp_path / "missing.txt")
