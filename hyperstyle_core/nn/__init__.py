"""Networks: ops (reference + fast paths), StyleGAN2, encoders, the hypernetwork, the per-kind model wrappers.

Pure PyTorch; nothing here reads or writes files.
"""
