"""The inference engine: the reference networks of `nn` run faster, without autograd, as one plan says.

`plan_inference` decides everything once per call (feature layouts, per-sample batches, strips, product forms,
fast mode's low-precision copies); `InferenceEngine` runs a HyperStyle model's two networks under such a plan, and
`render` runs a generator alone. Every form here is tested against the reference (tests/core/nn/engine).
"""
from .generator import render
from .hypernet import predict_deltas
from .inference import InferenceEngine
from .plan import InferencePlan, plan_inference

__all__ = ["InferenceEngine", "InferencePlan", "plan_inference", "predict_deltas", "render"]
