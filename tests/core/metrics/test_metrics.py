"""`hyperstyle evaluate` and hyperstyle_core.metrics against the official evaluation scripts, and their behaviour.

Reference values (tests/fixtures/official_metrics.json) were computed by the OFFICIAL code (yuval-alaluf/hyperstyle
@ a723c73) on CPU, outside this repository: scripts/calc_losses_on_images.py's transform (Resize((256, 256)),
ToTensor, Normalize(0.5, 0.5)) and GTResDataset pairing, criteria/lpips LPIPS(net_type='alex'), torch.nn.MSELoss and
criteria/ms_ssim.py MSSSIM, one image per call as the script; identity as criteria/id_loss.py:IDLoss.extract_feats
(IR-SE50, crop [35:223, 32:220], pool 112) and the dot product calc_id_loss_parallel.py takes. Weights: the recipe
weights of the manifests ir_se50, alexnet, lpips_alex_lin. Shims only: .cuda() kept on the CPU, torchvision's
alexnet(True) and torch.hub returning the recipe weights, model_paths pointing at a recipe file. Inputs: the pictures
`_write_parity_images` writes (shared photos resized, noised, blurred, swapped, brightened, pure noise; mismatched
sizes).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from conftest import SHARED
from hyperstyle_core.cli import main as cli_main
from hyperstyle_core.metrics import (Evaluation, ImagePair, evaluate_folders, evaluate_pairs, evaluate_run,
                                     format_summary, load_metric_network_files, load_metric_networks, ms_ssim,
                                     pair_folders, pair_run, parse_metrics, score_pair, summarise, write_reports)
from hyperstyle_core.metrics.images import read_metric_image

log = logging.getLogger(__name__)     # measurements, shown with --log-cli-level=INFO

REFS = json.loads((Path(__file__).resolve().parents[2] / "fixtures" / "official_metrics.json").read_text())
PHOTOS = SHARED / "data" / "photos"
# float32 on both sides, the same operations in the same order except the resize's float steps (x / 255 * 2 - 1 vs
# ToTensor + Normalize) and the thread count (summation order): observed max abs error 6e-8 for every metric.
# A wrong window, range guess or scale weight moves a score by more than 1e-3.
TOL = 2e-6


def _write_parity_images(root: Path) -> tuple[Path, Path]:
    """The images the official reference was computed on (same recipe as /tmp/metrics_parity/official_metrics.py)."""
    pred, gt = root / "pred", root / "gt"
    pred.mkdir(parents=True)
    gt.mkdir(parents=True)

    def photo(name: str, side: int) -> Image.Image:
        return Image.open(PHOTOS / f"aligned_{name}.jpg").convert("RGB").resize((side, side), Image.LANCZOS)

    rng = np.random.default_rng(12)
    for name in ("affleck", "bezos", "blunt", "damon", "downey", "johansson"):
        photo(name, 128).save(gt / f"{name}.png")
    noisy = np.asarray(photo("affleck", 128), np.float64) + rng.normal(0, 12, (128, 128, 3))
    Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8)).save(pred / "affleck.png")
    photo("bezos", 200).filter(ImageFilter.GaussianBlur(2)).save(pred / "bezos.png")
    photo("blunt", 128).save(pred / "blunt.png")
    photo("dicaprio", 96).save(pred / "damon.png")
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(pred / "johansson.png")
    bright = np.asarray(photo("downey", 128), np.float64) * 0.4 + 150      # no value below -0.5: MS-SSIM range 1
    Image.fromarray(np.round(bright).astype(np.uint8)).save(pred / "downey.png")
    return pred, gt


@pytest.fixture(scope="module")
def metric_models(loss_models) -> Path:
    """A models folder with the metric networks (the shared loss-network folder: IR-SE50, AlexNet, LPIPS, MoCo)."""
    return loss_models


@pytest.fixture(scope="module")
def parity_images(tmp_path_factory) -> tuple[Path, Path]:
    pred, gt = _write_parity_images(tmp_path_factory.mktemp("parity"))
    sums = {f"{p.parent.name}/{p.name}": int(np.asarray(Image.open(p).convert("RGB"), np.int64).sum())
            for p in [*pred.iterdir(), *gt.iterdir()]}
    assert sums == REFS["pixel_sums"], "the test images differ from those the official reference was computed on"
    return pred, gt


@pytest.fixture(scope="module")
def evaluation(parity_images, metric_models):
    return evaluate_folders(*parity_images, models_dir=metric_models)


# ------------------------------------------------------------------------------------------- official parity

def test_scores_equal_the_official_scripts(evaluation):
    errors = {m: 0.0 for m in ("l2", "lpips", "ms_ssim", "id")}
    assert set(evaluation.scores) == set(REFS["scores"])
    for name, theirs in REFS["scores"].items():
        for metric, value in theirs.items():
            errors[metric] = max(errors[metric], abs(evaluation.scores[name][metric] - value))
    log.info("max abs error per metric vs official: %s", {m: f"{e:.1e}" for m, e in errors.items()})
    assert max(errors.values()) <= TOL, errors
    for metric, theirs in REFS["summary"].items():
        ours = evaluation.summary[metric]
        assert (ours.mean, ours.std, ours.count) == pytest.approx((theirs["mean"], theirs["std"], theirs["count"]),
                                                                  abs=TOL)


def test_identical_images_score_perfectly(evaluation):
    assert evaluation.scores["blunt.png"] == pytest.approx({"l2": 0.0, "lpips": 0.0, "id": 1.0, "ms_ssim": 1.0},
                                                           abs=1e-6)


def test_summary_prints_like_the_official_scripts(evaluation):
    text = format_summary(evaluation)
    s = REFS["summary"]["l2"]
    assert f"l2: {s['mean']:.5f}+-{s['std']:.5f} (n=6)" in text
    assert f"id: {REFS['summary']['id']['mean']:.2f}+-" in text
    assert "6 pair(s) scored, 0 file(s) unpaired, 0 unreadable" in text


# --------------------------------------------------------------------------------------------- MS-SSIM details

def test_ms_ssim_range_follows_the_prediction_as_official():
    """The official code guesses L from its first image: a value below -0.5 means [-1, 1] (L = 2), else L = 1; the
    parity pairs cover both (downey.png is bright). So the score is not symmetric in its arguments."""
    torch.manual_seed(0)
    dark = torch.rand(1, 3, 64, 64) * 2 - 1
    bright = dark * 0.2 + 0.5
    assert ms_ssim(dark, dark) == pytest.approx(1.0, abs=1e-6)
    assert ms_ssim(bright, dark) != pytest.approx(ms_ssim(dark, bright), abs=1e-3)


def test_nan_scores_are_skipped_in_the_summary_and_written_as_null(tmp_path):
    s = summarise([1.0, float("nan"), 3.0])
    assert (s.mean, s.std, s.count, s.nan) == (2.0, 1.0, 2, 1)
    none = summarise([float("nan")])
    assert math.isnan(none.mean) and none.count == 0 and none.nan == 1
    pair = ImagePair("x.png", Path("p/x.png"), Path("g/x.png"))
    result = Evaluation(("ms_ssim",), scores={"x.png": {"ms_ssim": float("nan")}}, pairs={"x.png": pair},
                        summary={"ms_ssim": none})
    _, summary_path = write_reports(result, tmp_path)
    assert json.loads(summary_path.read_text())["metrics"]["ms_ssim"] == {"mean": None, "std": None, "count": 0,
                                                                           "nan": 1}
    assert "ms_ssim: nan+-nan (n=0, 1 NaN left out)" in format_summary(result)


# ---------------------------------------------------------------------------------------------------- pairing

def _png(path: Path, value: int = 128, side: int = 64) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (side, side), (value, value // 2, 255 - value)).save(path)
    return path


def test_folders_pair_by_name_then_by_stem_and_list_the_rest(tmp_path):
    for name in ("a.png", "b.png", "c.png", "d.png", "readme.txt"):
        _png(tmp_path / "pred" / name) if name.endswith(".png") else (tmp_path / "pred" / name).write_text("x")
    _png(tmp_path / "gt" / "a.png")
    _png(tmp_path / "gt" / "b.jpg")                         # prediction saved as PNG for a JPEG
    _png(tmp_path / "gt" / "d.jpg")
    _png(tmp_path / "gt" / "d.webp")                        # two candidates: ambiguous
    _png(tmp_path / "gt" / "e.png")                         # no prediction
    pairing = pair_folders(tmp_path / "pred", tmp_path / "gt")
    assert [(p.name, p.gt.name) for p in pairing.pairs] == [("a.png", "a.png"), ("b.png", "b.jpg")]
    reasons = dict(pairing.unpaired)
    assert reasons["c.png"].startswith("no ground truth of that name")
    assert reasons["d.png"].startswith("several ground truths share its stem (d.jpg, d.webp)")
    assert reasons["e.png"].startswith("ground truth without a prediction")
    assert "readme.txt" not in reasons


def _huge_png_header(path: Path, side: int = 10_000) -> None:
    """A PNG whose header claims side x side pixels (100 megapixels, 300 MB decoded) but holds none."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", side, side)                        # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))     # its CRC (chunk type + data)
    path.write_bytes(bytes(data))


def test_unreadable_files_are_listed_never_fatal(tmp_path):
    _png(tmp_path / "pred" / "good.png")
    _png(tmp_path / "gt" / "good.png", 100)
    (tmp_path / "pred" / "cut.png").write_bytes(_png(tmp_path / "x.png").read_bytes()[:60])     # truncated
    _png(tmp_path / "gt" / "cut.png")
    _png(tmp_path / "pred" / "bomb.png")
    _huge_png_header(tmp_path / "gt" / "bomb.png")
    result = evaluate_pairs(pair_folders(tmp_path / "pred", tmp_path / "gt"), ["l2", "ms_ssim"])
    assert list(result.scores) == ["good.png"]
    reasons = dict(result.unreadable)
    assert reasons.keys() == {"bomb.png", "cut.png"}
    assert reasons["bomb.png"].startswith("bomb.png is 10000x10000 = 100 megapixels, above the limit of 80")
    assert "cut.png" in reasons["cut.png"]


def test_nothing_paired_is_refused_with_the_reasons(tmp_path):
    _png(tmp_path / "pred" / "a.png")
    (tmp_path / "gt").mkdir()
    with pytest.raises(ValueError, match=r"^no prediction could be paired with a ground truth \(1 file\(s\) "
                                         r"unpaired: a.png: no ground truth of that name"):
        evaluate_pairs(pair_folders(tmp_path / "pred", tmp_path / "gt"), ["l2"])


def test_mismatched_sizes_are_resized_to_256_as_official(tmp_path):
    big, small = _png(tmp_path / "big.png", 90, side=300), _png(tmp_path / "small.png", 90, side=80)
    assert read_metric_image(big).shape == read_metric_image(small).shape == (1, 3, 256, 256)
    assert score_pair(read_metric_image(big), read_metric_image(small), ["l2"])["l2"] == pytest.approx(0, abs=1e-6)


def _manifest(run: Path, records: list[dict]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + "{torn line")


def test_run_folder_pairs_each_inversion_with_its_aligned_input(tmp_path):
    run = tmp_path / "out"
    _png(run / "a_inversion.png", 10)
    _png(run / "a_aligned.png", 20)
    _png(run / "b_inversion.png", 30)
    source = _png(tmp_path / "photos" / "b.png", 40)
    _png(run / "c_inversion.png")
    ok = {"status": "ok", "align": True}
    _manifest(run, [
        {**ok, "file": "a.jpg", "kinds": {"a_aligned.png": "aligned", "a_inversion.png": "inversion"}},
        {**ok, "file": "b.png", "align": False, "source": str(source), "kinds": {"b_inversion.png": "inversion"}},
        {**ok, "file": "c.jpg", "kinds": {"c_inversion.png": "inversion"}},
        {**ok, "file": "d.jpg", "kinds": {"../a_inversion.png": "inversion", "d_aligned.png": "aligned"}},
        {**ok, "file": "e.jpg", "kinds": {"e_aligned.png": "aligned", "e_inversion.png": "inversion"}},
        {"file": "f.jpg", "status": "skipped", "code": "no_face", "reason": "No face found in f.jpg"},
    ])
    pairing = pair_run(run)
    assert [(p.name, p.pred.name, p.gt) for p in pairing.pairs] == [
        ("a_inversion.png", "a_inversion.png", run / "a_aligned.png"), ("b_inversion.png", "b_inversion.png", source)]
    reasons = dict(pairing.unpaired)
    assert reasons["c.jpg"].startswith("the run did not save its aligned crop")
    assert reasons["d.jpg"].startswith("the run wrote no inversion for it")     # a planted path is not followed
    assert reasons["e.jpg"].startswith("its inversion") and reasons["e.jpg"].endswith("is missing")
    assert reasons["f.jpg"] == "the run recorded it as skipped: No face found in f.jpg"
    assert evaluate_run(run, tmp_path / "no_models", ["l2", "ms_ssim"]).scores.keys() == {"a_inversion.png",
                                                                                           "b_inversion.png"}


def test_a_folder_without_manifest_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"has no manifest.jsonl, so it is not the output folder of "
                                                r"`hyperstyle run`; compare two folders with --pred and --gt"):
        pair_run(tmp_path)


# ------------------------------------------------------------------------------------------ networks and metrics

def test_metric_names_are_checked():
    assert parse_metrics("ms_ssim, L2,msssim") == ("l2", "ms_ssim")
    with pytest.raises(ValueError, match=r"^unknown metric 'psnr'; choose from l2, lpips, id, ms_ssim"):
        parse_metrics("l2,psnr")
    with pytest.raises(ValueError, match=r"^no metric chosen"):
        parse_metrics(" , ")


def test_absent_networks_are_refused_with_the_download_command(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_metric_networks(["l2", "lpips", "id", "ms_ssim"], tmp_path)
    message = str(info.value)
    assert f"Get them with `hyperstyle download alexnet lpips_alex model_ir_se50 --models {tmp_path}`" in message
    assert message.endswith("or leave those metrics out: --metrics l2,ms_ssim")
    assert "the lpips metric needs the perceptual-loss network (LPIPS AlexNet), alexnet.safetensors" in message
    assert "the id metric needs the face-identity network (IR-SE50, ID loss), model_ir_se50.safetensors" in message
    nets = load_metric_networks(["l2", "ms_ssim"], tmp_path)       # left out: nothing needed
    assert nets.lpips is None and nets.id is None


def test_networks_from_single_files_score_as_those_from_a_folder(metric_models, parity_images):
    """load_metric_network_files (what HyperStyle Compare loads with) gives the networks load_metric_networks
    finds in a models folder (here under the names a hand conversion of the official files gives)."""
    files = {"lpips_network": metric_models / "alexnet-owt-7be5be79.safetensors",
             "lpips_layers": metric_models / "alex.safetensors",
             "id_network": metric_models / "model_ir_se50.safetensors"}
    pred, gt = parity_images
    x, y = read_metric_image(pred / "bezos.png"), read_metric_image(gt / "bezos.png")
    from_files = score_pair(x, y, ["lpips", "id"], load_metric_network_files(**files))
    assert from_files == score_pair(x, y, ["lpips", "id"], load_metric_networks(["lpips", "id"], metric_models))
    only_id = load_metric_network_files(id_network=files["id_network"])
    assert only_id.lpips is None and only_id.id is not None
    with pytest.raises(ValueError, match=r"^LPIPS needs two files and only lpips_network was given; give "
                                         r"lpips_layers too \(lpips_alex.safetensors\), or neither$"):
        load_metric_network_files(lpips_network=files["lpips_network"])


# ------------------------------------------------------------------------------------------------ reports, CLI

def test_reports_are_csv_and_json(evaluation, tmp_path):
    scores_path, summary_path = write_reports(evaluation, tmp_path / "m")
    rows = list(csv.DictReader(scores_path.open()))
    assert [r["name"] for r in rows] == sorted(REFS["scores"])
    assert float(rows[0]["lpips"]) == evaluation.scores[rows[0]["name"]]["lpips"]      # full precision
    summary = json.loads(summary_path.read_text())
    assert summary["metrics"]["ms_ssim"]["mean"] == pytest.approx(REFS["summary"]["ms_ssim"]["mean"], abs=TOL)
    assert summary["pairs"] == 6 and summary["unpaired"] == [] and summary["unreadable"] == []
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["scores.csv", "summary.json"]     # no temp files


def test_cli_evaluates_folders_and_runs(parity_images, metric_models, tmp_path, capsys):
    pred, gt = parity_images
    assert cli_main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--models", str(metric_models),
                     "--metrics", "l2,lpips,ms_ssim", "--out", str(tmp_path / "m"), "--device", "cpu"]) == 0
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert list(summary["metrics"]) == ["l2", "lpips", "ms_ssim"]      # id left out: its file is not even read
    for metric, theirs in ((m, REFS["summary"][m]) for m in summary["metrics"]):
        assert summary["metrics"][metric]["mean"] == pytest.approx(theirs["mean"], abs=TOL)
    assert "lpips: " in capsys.readouterr().out
    run = tmp_path / "run"
    _png(run / "a_inversion.png", 10)
    _png(run / "a_aligned.png", 20)
    _manifest(run, [{"file": "a.jpg", "status": "ok", "kinds": {"a_aligned.png": "aligned",
                                                                 "a_inversion.png": "inversion"}}])
    assert cli_main(["evaluate", "--run", str(run), "--metrics", "l2", "--models", str(tmp_path)]) == 0
    assert (run / "inference_metrics" / "scores.csv").is_file()


def test_cli_refuses_absent_networks_and_bad_arguments(tmp_path, capsys):
    _png(tmp_path / "p" / "a.png")
    _png(tmp_path / "g" / "a.png")
    args = ["evaluate", "--pred", str(tmp_path / "p"), "--gt", str(tmp_path / "g"), "--models", str(tmp_path / "m")]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "hyperstyle download alexnet lpips_alex model_ir_se50" in err and "--metrics l2,ms_ssim" in err
    assert not (tmp_path / "inference_metrics").exists()
    assert cli_main(args + ["--metrics", "l2,ms_ssim"]) == 0
    assert (tmp_path / "inference_metrics" / "summary.json").is_file()     # official place: beside --pred
    assert cli_main(["evaluate", "--pred", str(tmp_path / "p")]) == 2
    assert "error: --pred needs --gt (the folder of ground truths" in capsys.readouterr().err
    assert cli_main(["evaluate", "--metrics", "l2"]) == 2
    assert "error: say what to compare: --pred DIR --gt DIR, or --run OUTPUT_DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit):     # argparse: --run and --pred exclude each other
        cli_main(["evaluate", "--run", str(tmp_path), "--pred", str(tmp_path / "p")])
