"""CoT2: continuous chain of thought on the causal LM (Gozeten et al. 2025). Thoughts are mixtures over the
vocabulary fed back as alpha @ W_E through models/causal_lm's tied table (rollout.py), trained by discrete SFT,
continuous supervision (CSFT) or GRPO with multi-token sampling / Dirichlet exploration (objective.py,
exploration.py). The task and its targets are data/mnns.py."""
from models.cot2.objective import CsftObjective, DiscreteCotObjective, GrpoObjective
from models.cot2.rollout import full_forward, rollout

__all__ = ["CsftObjective", "DiscreteCotObjective", "GrpoObjective", "full_forward", "rollout"]
