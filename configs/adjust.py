"""ADJUST on a frozen MDLM: one recurrent block that lets one base call be followed by K - 1 cheap calls.

Commands (2-core CPU), after training the base with configs/mdlm.py in /tmp/mdlm:
  python launch.py --config=configs/mdlm.py --workdir=/tmp/mdlm --mode=decode \\
      --config.decode.trajectories=2048 --config.decode.trajectory_file=/tmp/mdlm/trajectories.npz
  python launch.py --config=configs/adjust.py --workdir=/tmp/adjust
  python launch.py --config=configs/adjust.py --workdir=/tmp/adjust --mode=decode --config.decode.tokens_per_call=3
Expected result: the validation `loss` (forward KL from the base's exact next-step conditionals, nats per target
position) falls below `naive_kl` (the step-start base logits against the same targets: what the parallel sampler
uses); the closing samples fill the prompts' masks with one base call and tokens_per_call - 1 ADJUST calls per step.
The base (everything outside params["adjust"]) is loaded by checkpoint.init_from and frozen; its model.* keys
must equal the base run's. Arguments: (none) the default above; "tiny" matches configs/mdlm.py:tiny.
"""
from configs import mdlm
from configs.base import prune_unread


def get_config(arg: str | None = None):
  if arg not in (None, "", "tiny"):
    raise ValueError(f"configs/adjust.py: unknown argument {arg!r}; use 'tiny' or nothing")
  c = mdlm.get_config(arg)
  c.unlock()
  m = c.model
  m.name = "adjust"
  m.adjust_num_heads = m.num_heads
  m.adjust_intermediate_size = 2 * m.hidden_size
  m.adjust_rope_theta = 10_000.0
  m.adjust_norm_eps = 1e-6
  m.adjust_max_depth = 3          # the spec's speculation_len: up to 4 tokens per base call
  workdir = "/tmp/mdlm_tiny" if arg == "tiny" else "/tmp/mdlm"
  c.checkpoint.init_from = workdir
  c.objective.trajectory_file = f"{workdir}/trajectories.npz"
  c.decode.tokens_per_call = 3
  c.optim.lr = 1e-3
  c.optim.weight_decay = 0.0      # spec §5.3
  c.optim.schedule = "constant"
  c.train.num_steps = 6 if arg == "tiny" else 1000
  c.train.eval_every = c.train.checkpoint_every = 3 if arg == "tiny" else 250
  prune_unread(c)
  c.lock()
  return c
