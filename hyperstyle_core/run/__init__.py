"""The folder runner (`hyperstyle run` and friends): options (RunOptions, edits), naming (output names), state (what
each output depends on, as keys recorded in the manifest), manifest (manifest, output-folder lock, summary), models
(finding, identifying and loading), plan (what each file still needs), steps and worker (per-file read, render,
write), work (what passes between them and the driver: WorkItem, RenderedBatch, FileResult), restyle_latents,
runner (the driver: run_folder) and the engines that place the workers: in-process (runner) or on Ray actors
(ray_engine; input_list streams a list file). The inputs are listed by io.folders; the output folder's format
(file names, manifest records, plain names) is io.run_folder."""
