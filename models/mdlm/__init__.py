"""Masked diffusion LM (MDLM, Sahoo et al. 2024) on the ModernBERT blocks, and the ADJUST joint-sampling layer
(Bansal & Sanghavi 2025). Spec: Bansal & Sanghavi 2025."""
from models.mdlm.model import MaskedDiffusionLM, subs_logits
from models.mdlm.objective import LOSS_WEIGHTINGS, MdlmObjective

__all__ = ["LOSS_WEIGHTINGS", "MaskedDiffusionLM", "MdlmObjective", "subs_logits"]
