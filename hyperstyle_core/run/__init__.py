"""The folder runner (`hyperstyle run` and friends): options (RunOptions, edits), naming (output names), manifest
(manifest, output-folder lock, summary), models (loading), steps (per-file read, render, write) and runner
(run_folder). The inputs are listed by io.folders."""
