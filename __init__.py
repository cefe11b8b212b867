"""ComfyUI entry point of the HyperStyle pack. Keeps imports light: the models load when a node runs."""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .nodes._comfy import register_model_folder

register_model_folder()

# The frontend loads every .js file in it: web/hyperstyle_wires.js gives the HYPERSTYLE_* wires their own colours.
WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
