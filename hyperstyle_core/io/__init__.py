"""Files: the one format layer (formats), converted checkpoints (checkpoints, convert), restricted unpicklers,
latents, directions, images, downloads, the loss networks' files (loss_network_files) and the format of a folder
run's output folder (run_folder)."""
