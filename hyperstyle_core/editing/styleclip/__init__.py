"""StyleCLIP global directions in style space (S), as HyperStyle's editing/styleclip uses them.

The official pipeline (editing/styleclip/edit.py, global_direction.py, stylespace_utils.py), module by module:

1. `layout`: render the inverted codes with the image's weight deltas and keep the S codes (every modulated
   layer's modulation output, ToRGB included): `generator.style_codes(latent)`, a dict {layer name: [B, dim]};
   conversion to and from official S lists; rendering from S (`render_style_codes`).
2. `text`: each text is formatted with ~79 prompt templates, embedded by CLIP's text encoder, each embedding
   L2-normalised, averaged, renormalised; `delta_i = normalise(t_target - t_neutral)` [D].
3. `global_directions`: channel relevance `r_c = delta_i_c @ delta_i`, thresholded by beta, spread over the first 11
   non-ToRGB layers times each channel's S standard deviation; the edit is `s + alpha * direction`.
4. `stats`: the S statistics (official S_mean_std pickle, read with a numpy-only unpickler; safetensors; or computed
   for any generator).
5. `channels`: the per-channel CLIP image directions `delta_i_c` ("fs3") for any generator, saved with their row
   layout (`layout.channel_layout`: which layer and channel each row is).
6. `clip_model`: CLIP checkpoints (never downloaded; read without running code from the file) and the image encoder.
7. `edit`: `styleclip_edit`, the whole edit of a batch of inverted images.

CLIP is optional (`pip install openai-clip "setuptools<81"`) and imported only by the functions that need it.
"""
from .channels import (compute_channel_directions, load_channel_directions, save_channel_directions,
                       save_generator_channel_directions)
from .clip_model import (clip_image_preprocess, convert_clip_to_safetensors, encode_images, load_clip,
                         read_clip_state_dict)
from .edit import styleclip_edit
from .global_directions import (apply_global_direction, channel_relevance, channels_to_style_direction,
                                global_direction, threshold_relevance)
from .layout import (OFFICIAL_EDIT_LAYER_COUNT, channel_layout, is_torgb_layer, official_layer_names,
                     official_to_style_codes, render_style_codes, style_codes_to_official, styleclip_edit_layers)
from .stats import compute_s_stats, load_s_stats, read_s_mean_std, sample_w, save_s_stats
from .text import CLIP_INSTALL, FALLBACK_TEMPLATES, averaged_text_features, load_templates, text_direction

__all__ = [
    "FALLBACK_TEMPLATES", "OFFICIAL_EDIT_LAYER_COUNT", "official_layer_names", "is_torgb_layer",
    "styleclip_edit_layers", "style_codes_to_official", "official_to_style_codes", "render_style_codes",
    "read_s_mean_std", "save_s_stats", "load_s_stats", "compute_s_stats", "load_templates", "averaged_text_features",
    "text_direction", "channel_relevance", "threshold_relevance", "channels_to_style_direction", "global_direction",
    "apply_global_direction", "read_clip_state_dict", "load_clip", "convert_clip_to_safetensors",
    "clip_image_preprocess", "encode_images", "sample_w", "compute_channel_directions", "save_channel_directions",
    "load_channel_directions", "styleclip_edit", "CLIP_INSTALL", "channel_layout", "save_generator_channel_directions",
]
