"""ComfyUI nodes of the HyperStyle pack: thin wrappers over hyperstyle_core."""
from .deltas import (HyperStyleLoadDeltas, HyperStyleLoadLatent, HyperStyleSaveDeltas, HyperStyleSaveLatent,
                     HyperStyleTransferDeltas)
from .animate import HyperStyleInterpolate, HyperStyleSaveAnimation
from .edit import (HyperStyleComputeGanSpace, HyperStyleFitDirection, HyperStyleGanSpaceEdit, HyperStyleLatentEdit,
                   HyperStyleLatentEditSweep, HyperStyleLoadGanSpace)
from .face import HyperStyleAlignFace, HyperStylePasteBack
from .folder import HyperStyleLoadImageFolder, HyperStyleSaveImagesNamed
from .invert import HyperStyleEncode, HyperStyleEncodeReStyle, HyperStyleGenerate, HyperStyleRefine
from .styleclip import HyperStyleComputeStyleCLIPDirections, HyperStyleStyleCLIPEdit
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
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "HyperStyleLoadModel": "HyperStyle Load Model",
    "HyperStyleLoadWEncoder": "HyperStyle Load W-Encoder",
    "HyperStyleLoadGenerator": "HyperStyle Load Generator",
    "HyperStyleLoadReStyle": "HyperStyle Load ReStyle-e4e",
    "HyperStyleLoadDirection": "HyperStyle Load Direction",
    "HyperStyleUnloadModels": "HyperStyle Unload Models",
    "HyperStyleAlignFace": "HyperStyle Align Face",
    "HyperStylePasteBack": "HyperStyle Paste Back",
    "HyperStyleEncode": "HyperStyle Encode",
    "HyperStyleEncodeReStyle": "HyperStyle Encode ReStyle",
    "HyperStyleRefine": "HyperStyle Refine",
    "HyperStyleGenerate": "HyperStyle Generate",
    "HyperStyleLatentEdit": "HyperStyle Latent Edit",
    "HyperStyleLatentEditSweep": "HyperStyle Latent Edit Sweep",
    "HyperStyleLoadGanSpace": "HyperStyle Load GANSpace",
    "HyperStyleComputeGanSpace": "HyperStyle Compute GANSpace",
    "HyperStyleGanSpaceEdit": "HyperStyle GANSpace Edit",
    "HyperStyleFitDirection": "HyperStyle Fit Direction",
    "HyperStyleStyleCLIPEdit": "HyperStyle StyleCLIP Edit",
    "HyperStyleComputeStyleCLIPDirections": "HyperStyle Compute StyleCLIP Directions",
    "HyperStyleInterpolate": "HyperStyle Interpolate",
    "HyperStyleSaveAnimation": "HyperStyle Save Animation",
    "HyperStyleTransferDeltas": "HyperStyle Transfer Deltas",
    "HyperStyleSaveDeltas": "HyperStyle Save Deltas",
    "HyperStyleLoadDeltas": "HyperStyle Load Deltas",
    "HyperStyleSaveLatent": "HyperStyle Save Latent",
    "HyperStyleLoadLatent": "HyperStyle Load Latent",
    "HyperStyleLoadImageFolder": "HyperStyle Load Image Folder",
    "HyperStyleSaveImagesNamed": "HyperStyle Save Images Named",
}
