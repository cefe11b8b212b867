"""The folder runner (`hyperstyle run` and friends): options (RunOptions, edits), naming (output names), state (what
each output depends on, as keys recorded in the manifest), manifest (manifest, output-folder lock, summary), models
(finding, identifying and loading), steps (per-file read, render, write) and runner (run_folder). The inputs are
listed by io.folders."""
