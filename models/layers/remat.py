"""Rematerialisation policies for a layer (`model.remat`): what the backward pass keeps from the forward pass.

  "none"           keep every activation (fastest, most memory)
  "full"           keep only the layer's inputs; recompute the rest in the backward pass
  "dots_saveable"  keep the outputs of matrix products, recompute the cheap elementwise work
                   (jax.checkpoint_policies.dots_saveable, and the products named by models/layers/matmul.py)
  "offload"        keep the products' outputs in host memory instead of HBM and fetch them for the backward pass
                   (jax.checkpoint_policies.save_and_offload_only_these_names, device -> pinned_host); TPU
                   compiler (and GPU)
The sizing table in BENCHMARKS.md shows what each saves on one shape (launch.py --mode=compile_only).
"""
from typing import Any

import flax.linen as nn
import jax

from models.layers.matmul import PRODUCTS

REMAT_POLICIES = ("none", "full", "dots_saveable", "offload")


def checkpoint_policy(name: str) -> Any:
  """The jax.checkpoint policy of a name. Products are matched by XLA's dot and by the name every product of
  models/layers/matmul.py carries (its 16-bit custom VJP hides the dot from a dot-matching policy)."""
  if name not in REMAT_POLICIES[1:]:
    raise ValueError(f"model.remat={name!r}: use one of {list(REMAT_POLICIES)}")
  policies = jax.checkpoint_policies
  if name == "full":
    return None
  if name == "dots_saveable":
    return policies.save_from_both_policies(policies.dots_saveable, policies.save_only_these_names(PRODUCTS))
  return policies.save_and_offload_only_these_names(names_which_can_be_saved=[],
                                                    names_which_can_be_offloaded=[PRODUCTS],
                                                    offload_src="device", offload_dst="pinned_host")


def remat(layer_cls: type, name: str, **kwargs) -> type:
  """`layer_cls` wrapped by flax's nn.remat with the named policy ("none": unchanged); kwargs go to nn.remat."""
  if name == "none":
    return layer_cls
  return nn.remat(layer_cls, policy=checkpoint_policy(name), **kwargs)
