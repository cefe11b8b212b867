"""The alignment record: where an aligned crop came from in its photo (what paste-back needs), and its JSON form."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..io.formats import FORMATS, check_format, tag


@dataclass(frozen=True)
class AlignmentInfo:
    """Everything `paste_back` needs to put an aligned crop back into the photo it came from.

    Attributes:
        source_height: height H of the image that was aligned (after grayscale/RGBA conversion, same pixels).
        source_width: width W of that image.
        quad: the 4 corners (x, y) of the region the crop shows, in source pixel-index coordinates, in PIL QUAD
            order: top-left, bottom-left, bottom-right, top-right of the aligned crop. It is where the crop's pixels
            actually came from, which is `ffhq_quad(landmarks)` up to the sub-pixel offset of the official shrink.
        output_size: side S of the aligned crop in pixels.
        image_index: index of the image in its batch (informative; 0 for a single image).
        face_index: which face of that image, 0 = largest.
    """
    source_height: int
    source_width: int
    quad: tuple[tuple[float, float], ...]
    output_size: int
    image_index: int = 0
    face_index: int = 0

    def __post_init__(self) -> None:
        quad = np.asarray(self.quad, dtype=np.float64)
        if quad.shape != (4, 2) or not np.all(np.isfinite(quad)):
            raise ValueError(f"AlignmentInfo.quad must be 4 finite (x, y) corners, got shape {quad.shape}")
        # Stored as tuples so the record stays immutable, hashable and comparable with ==.
        object.__setattr__(self, "quad", tuple((float(x), float(y)) for x, y in quad))
        for name in ("source_height", "source_width", "output_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"AlignmentInfo.{name} must be a positive integer, got {getattr(self, name)}")
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("image_index", "face_index"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"AlignmentInfo.{name} must be >= 0, got {getattr(self, name)}")
            object.__setattr__(self, name, int(getattr(self, name)))

    @property
    def quad_array(self) -> np.ndarray:
        """The quad as a fresh [4, 2] float64 array (x, y), rows top-left, bottom-left, bottom-right, top-right."""
        return np.array(self.quad, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (plain ints, floats and lists), read back by `from_dict`."""
        return {
            "format": tag("alignment"), "version": FORMATS["alignment"][0],
            "source_height": self.source_height, "source_width": self.source_width,
            "quad": [list(corner) for corner in self.quad], "output_size": self.output_size,
            "image_index": self.image_index, "face_index": self.face_index,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AlignmentInfo":
        """Inverse of `to_dict`. Raises ValueError naming the missing or unsupported field."""
        if not isinstance(data, Mapping):
            raise ValueError("AlignmentInfo.from_dict needs a dict made by AlignmentInfo.to_dict, "
                             f"got {type(data).__name__}")
        if "format" in data or "version" in data:      # records without them predate the format tag
            check_format({k: str(v) for k, v in data.items() if k in ("format", "version")}, "alignment",
                         "the alignment record", "save it with AlignmentInfo.to_dict()")
        missing = [k for k in ("source_height", "source_width", "quad", "output_size") if k not in data]
        if missing:
            raise ValueError(f"alignment record lacks {', '.join(missing)}; save it with AlignmentInfo.to_dict()")
        return cls(int(data["source_height"]), int(data["source_width"]), data["quad"],
                   int(data["output_size"]), int(data.get("image_index", 0)), int(data.get("face_index", 0)))
