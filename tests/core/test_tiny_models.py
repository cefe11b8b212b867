"""Tiny models (real architectures, reduced widths) save, load and invert quickly."""
from __future__ import annotations


import torch

from hyperstyle_core import invert, load
from hyperstyle_core.testing import make_tiny_models, write_tiny_models


def test_tiny_models_round_trip_and_invert(tmp_path):
    hs_path, we_path = write_tiny_models(tmp_path)
    hs = load(hs_path, device="cpu", expect="hyperstyle")
    we = load(we_path, device="cpu", expect="w_encoder")
    x = torch.rand(2, 3, 256, 256) * 2 - 1
    result = invert(x, hs, we, n_iters=3)
    assert result.latent.shape == (2, hs.generator.n_latent, 32)
    assert result.images[-1].shape == (2, 3, 64, 64)
    assert result.deltas.layer_indices == [0, 2, 3, 5, 6, 8, 9, 11, 12]
    assert all(torch.isfinite(d).all() for d in result.deltas.values())
    assert (result.images[-1] - result.initial).abs().max() > 0      # deltas do something


def test_separable_variant_builds_saves_and_predicts_full_kernels(tmp_path):
    """The separable hypernetwork (no released checkpoint) gives [B, out, in, 3, 3] offsets for the non-shared
    layers that vary over the kernel (unlike the per-channel blocks), and its files round-trip with the variant."""
    from hyperstyle_core.io.checkpoints import read_info, save_model
    from hyperstyle_core.nn.hypernetwork import HyperNetConfig
    from hyperstyle_core.nn.networks import HyperStyleModel, InputSpec
    from hyperstyle_core.testing import tiny_generator_config

    torch.manual_seed(0)
    config = HyperNetConfig(tiny_generator_config(size=256), variant="separable")
    model = HyperStyleModel(config, InputSpec()).eval()
    path = save_model(model, tmp_path / "separable.safetensors")
    assert read_info(path)["config"]["variant"] == "separable"
    loaded = load(path, device="cpu")
    out = loaded.hypernet(torch.rand(2, 6, 256, 256))
    assert set(out) == {loaded.generator.layer_names[i] for i in config.tuned}
    kernel = out["convs.9"]                                  # delta index 15: non-shared, 512/16 -> 256/16 ch
    assert kernel.shape == (2, 16, 16, 3, 3)
    assert not torch.allclose(kernel[..., 0, 0], kernel[..., 1, 1])   # full 3x3, not repeated per channel
    shared = HyperStyleModel(HyperNetConfig(tiny_generator_config(size=256)), InputSpec()).eval()
    per_channel = shared.hypernet(torch.rand(2, 6, 256, 256))["convs.9"]
    assert torch.equal(per_channel[..., 0, 0], per_channel[..., 1, 1])


def test_tiny_models_of_one_seed_are_the_same_whatever_the_global_random_state():
    """Every weight and buffer follows the seed (constructors draw from torch's global generator), so a tiny model
    is the same in every process; and building one leaves the caller's random stream alone."""
    torch.manual_seed(123)
    first = make_tiny_models(seed=3)
    after = torch.rand(4)
    torch.manual_seed(999)
    second = make_tiny_models(seed=3)
    for a, b in zip(first, second):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(4), after)    # the stream is where it would be without the model build
