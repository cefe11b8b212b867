"""Files: the one format layer (formats), converted checkpoints (checkpoints, convert), restricted unpicklers,
latents, directions, images, downloads."""
