"""The networks: the reference (ops, stylegan2, encoders, hypernetwork, loss networks; official keys and math, what
training differentiates), the model kinds and their typed configs, and `engine`, which runs the reference networks
faster for inference under one plan and is tested against them.

Pure PyTorch; nothing here reads or writes files.
"""
