"""Any-subset autoregressive models (AS-ARM; Guo & Ermon, arXiv 2504.20456): a one-stream transformer whose
single forward pass gives either the joint's conditionals along the canonical any-subset order or conditionally
independent drafts, and its joint + parallel training objective. Decoding (sequential, ASSD) is in decode/assd.py.
"""
from models.asarm.config import AsArmConfig
from models.asarm.masks import canonical_ranks, one_stream_mask
from models.asarm.model import AsArm, banned_log_probs
from models.asarm.objective import AnySubsetObjective

__all__ = ["AsArmConfig", "canonical_ranks", "one_stream_mask", "AsArm", "banned_log_probs", "AnySubsetObjective"]
