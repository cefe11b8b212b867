"""ComfyUI nodes of the HyperStyle pack: thin wrappers over hyperstyle_core."""
from .deltas import (HyperStyleLoadDeltas, HyperStyleLoadLatent, HyperStyleSaveDeltas, HyperStyleSaveLatent,
                     HyperStyleTransferDeltas)
from .animate import HyperStyleInterpolate, HyperStyleSaveAnimation
from .compare import HyperStyleCompare
from .edit import (HyperStyleComputeGanSpace, HyperStyleFitDirection, HyperStyleGanSpaceEdit, HyperStyleLatentEdit,
                   HyperStyleLatentEditSweep, HyperStyleLoadGanSpace)
from .face import HyperStyleAlignFace, HyperStylePasteBack
from .folder import HyperStyleLoadImageFolder, HyperStyleSaveImagesNamed
from .invert import HyperStyleEncode, HyperStyleEncodeReStyle, HyperStyleGenerate, HyperStyleRefine
from .styleclip import HyperStyleComputeStyleCLIPDirections, HyperStyleStyleCLIPEdit
from ._names import display_name
from .loaders import (HyperStyleLoadDirection, HyperStyleLoadGenerator, HyperStyleLoadModel, HyperStyleLoadReStyle,
                      HyperStyleLoadWEncoder, HyperStyleUnloadModels)

NODE_CLASS_MAPPINGS = {
    "HyperStyleLoadModel": HyperStyleLoadModel,
    "HyperStyleLoadWEncoder": HyperStyleLoadWEncoder,
    "HyperStyleLoadGenerator": HyperStyleLoadGenerator,
    "HyperStyleLoadReStyle": HyperStyleLoadReStyle,
    "HyperStyleLoadDirection": HyperStyleLoadDirection,
    "HyperStyleUnloadModels": HyperStyleUnloadModels,
    "HyperStyleAlignFace": HyperStyleAlignFace,
    "HyperStylePasteBack": HyperStylePasteBack,
    "HyperStyleEncode": HyperStyleEncode,
    "HyperStyleEncodeReStyle": HyperStyleEncodeReStyle,
    "HyperStyleRefine": HyperStyleRefine,
    "HyperStyleGenerate": HyperStyleGenerate,
    "HyperStyleLatentEdit": HyperStyleLatentEdit,
    "HyperStyleLatentEditSweep": HyperStyleLatentEditSweep,
    "HyperStyleLoadGanSpace": HyperStyleLoadGanSpace,
    "HyperStyleComputeGanSpace": HyperStyleComputeGanSpace,
    "HyperStyleGanSpaceEdit": HyperStyleGanSpaceEdit,
    "HyperStyleFitDirection": HyperStyleFitDirection,
    "HyperStyleStyleCLIPEdit": HyperStyleStyleCLIPEdit,
    "HyperStyleComputeStyleCLIPDirections": HyperStyleComputeStyleCLIPDirections,
    "HyperStyleInterpolate": HyperStyleInterpolate,
    "HyperStyleSaveAnimation": HyperStyleSaveAnimation,
    "HyperStyleTransferDeltas": HyperStyleTransferDeltas,
    "HyperStyleSaveDeltas": HyperStyleSaveDeltas,
    "HyperStyleLoadDeltas": HyperStyleLoadDeltas,
    "HyperStyleSaveLatent": HyperStyleSaveLatent,
    "HyperStyleLoadLatent": HyperStyleLoadLatent,
    "HyperStyleLoadImageFolder": HyperStyleLoadImageFolder,
    "HyperStyleSaveImagesNamed": HyperStyleSaveImagesNamed,
    "HyperStyleCompare": HyperStyleCompare,
}

# Display names carry the task words users search for ("invert", "toonify", "edit age"); see _names.py.
NODE_DISPLAY_NAME_MAPPINGS = {node_id: display_name(node_id) for node_id in NODE_CLASS_MAPPINGS}
