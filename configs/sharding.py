"""Logical-axis rules: logical tensor axis names -> mesh axes ('data', 'fsdp', 'tensor').

Rules are tried in order and a mesh axis is used at most once per tensor, so activations, whose batch axis
already takes ('data', 'fsdp'), keep `embed` unsharded, while parameters shard `embed` over 'fsdp' (ZeRO-3 style).
With all mesh axes but 'data' of size 1 this is plain data parallelism.
"""

RULES = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("vocab", "tensor"),
)
