"""Every config loads, is locked, builds its model and evaluates its shapes (no compilation of a step)."""
import importlib
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data.mnns import MnnsVocabulary
from data.vocab import ByteVocabulary
from configs.families import build

CONFIGS = [("modernbert_mlm", None), ("modernbert_mlm", "base"), ("modernbert_mlm", "large"),
           ("modernbert_mlm", "tabibert"), ("test_tiny", None), ("causal_lm", None), ("causal_lm", "modern"),
           ("modernbert_finetune", None), ("electra", None), ("electra", "small"), ("electra", "base"),
           ("electra", "large"), ("electra", "tiny,modernbert"), ("electra", "mlm"), ("electra_finetune", None),
           ("electra_finetune", "tiny,mlm"), ("asarm", None), ("asarm", "tiny"),
           ("mdlm", None), ("mdlm", "tiny"), ("adjust", None), ("adjust", "tiny"), ("lexinvariant", None),
           ("lexinvariant", "standard"), ("lexinvariant", "semi,symbolic"), ("lexinvariant", "char"),
           ("lexinvariant", "zipf,tiny"), ("ariel", None), ("ariel", "vae"), ("ariel", "ae,rules"),
           ("cot2", None), ("cot2", "discrete"), ("cot2", "grpo_mts"), ("cot2", "grpo_dirichlet,tiny")]
# transformers' parameter counts (tied matrices once): ElectraForPreTraining and ElectraForMaskedLM at the
# generator size of the joint model; the joint model holds both minus one copy of the shared embeddings.
ELECTRA_PUBLISHED = {"small": (13_549_057, 4_620_026), "base": (109_483_009, 33_740_602),
                     "large": (335_142_913, 51_295_290)}


@pytest.mark.parametrize("name, arg", CONFIGS)
def test_config_builds_and_eval_shapes(name, arg):
  config = importlib.import_module(f"configs.{name}").get_config(arg)
  assert config.is_locked
  with pytest.raises(AttributeError):
    config.optim.lrr = 1.0
  doc = importlib.import_module(f"configs.{name}").__doc__
  assert "python launch.py" in doc and "Expected result" in doc
  vocab = MnnsVocabulary() if config.data.vocab == "mnns" else ByteVocabulary()
  family = build(config, vocab)
  seq = config.data.seq_len
  shapes = jax.eval_shape(lambda: family.init_variables(jax.random.PRNGKey(0)))
  tokens = jnp.zeros((2, seq), jnp.int32)
  positions = jnp.broadcast_to(jnp.arange(seq), (2, seq))
  if config.model.name == "electra":     # the two towers' logits
    logits = jax.eval_shape(lambda v: family.module.apply(v, tokens, jnp.ones_like(tokens), positions,
                                                          method="generator_logits"), shapes)
    disc = jax.eval_shape(lambda v: family.module.apply(v, tokens, jnp.ones_like(tokens), positions,
                                                        method="discriminator_logits"), shapes)
    assert disc.shape == (2, seq) and disc.dtype == jnp.float32
  elif config.model.name == "asarm":     # every position visible, one query per position reading all others
    logits = jax.eval_shape(lambda v: family.module.apply(v, tokens, positions, jnp.full((2,), seq), positions,
                                                          jnp.full((2, seq), seq)), shapes)
  elif config.model.name == "sentence_vae":   # teacher-forced logits from (tokens, segment ids, noise)
    noise = jnp.zeros((2, family.hparams.latent_dim))
    logits = jax.eval_shape(lambda v: family.module.apply(v, tokens, jnp.ones_like(tokens), noise)[0], shapes)
  elif getattr(family.hparams, "embedding", "learned") != "learned":   # per-row embedding keys
    keys = jnp.zeros((2, 2), jnp.uint32)
    logits = jax.eval_shape(lambda v: family.module.apply(v, tokens, embed_keys=keys), shapes)
  else:
    logits = jax.eval_shape(lambda v: family.module.apply(v, tokens), shapes)
  expected = ((2, config.data.num_classes) if config.model.name.endswith("classifier")
              else (2, seq, family.hparams.vocab_size))
  assert logits.shape == expected and logits.dtype == jnp.float32
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
  published = {"base": 149_655_232, "large": 395_881_664}   # transformers' ModernBertForMaskedLM counts
  if name == "modernbert_mlm" and arg in published:
    assert n == published[arg]
  if name == "cot2" and arg != "grpo_dirichlet,tiny":   # transformers' GPT2LMHeadModel, vocab 89, d 32, 2L2H (spec §2)
    assert n == 28_672
  if name == "electra" and arg in ELECTRA_PUBLISHED:
    count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))  # noqa: E731
    p = shapes["params"]
    emb = count(p["embeddings"])
    assert (emb + count(p["discriminator"]), emb + count(p["generator"])) == ELECTRA_PUBLISHED[arg]


def test_every_config_file_is_covered():
  names = {p.stem for p in pathlib.Path(__file__).parents[2].joinpath("configs").glob("*.py")}
  assert names - {"__init__", "base", "sharding"} == {n for n, _ in CONFIGS}


def test_unknown_config_argument_is_an_error():
  with pytest.raises(ValueError, match="unknown argument 'huge'"):
    importlib.import_module("configs.modernbert_mlm").get_config("huge")


def _documented_commands() -> list[tuple[str, list[str]]]:
  """(config file, argv) of every `python launch.py ...` command in a config's docstring, split by bash exactly as
  a user's shell splits the pasted text (continuation lines, quotes, $'...', trailing comments)."""
  import subprocess
  out = []
  for path in sorted(pathlib.Path(__file__).parents[2].glob("configs/*.py")):
    doc = importlib.import_module(f"configs.{path.stem}").__doc__ or ""
    lines, i = doc.splitlines(), 0
    while i < len(lines):
      if "python launch.py" in lines[i] and not lines[i].lstrip().startswith(("e.g.", "`")):
        text = lines[i][lines[i].index("python launch.py") + len("python launch.py"):]
        while True:   # the command's lines: until bash reads a complete command (quotes closed, no continuation)
          r = subprocess.run(["bash", "-c", f"set -- {text}\nprintf '%s\\0' \"$@\""], capture_output=True, text=True)
          if (r.returncode == 0 and not text.rstrip().endswith("\\")) or i + 1 == len(lines):
            break
          i += 1
          text += "\n" + lines[i]
        assert r.returncode == 0, (path.name, text, r.stderr)
        out.append((path.name, r.stdout.split("\0")[:-1]))
      i += 1
  return out


def test_every_documented_command_parses_as_the_shell_passes_it():
  """Each config docstring's launch.py command, as bash hands it over: the config file and argument load, every
  --config.* override names a key of that config, every flag is one launch.py defines, and no --text carries a
  literal backslash-n (bash passes '\\n' inside single quotes as two characters)."""
  import launch
  from absl import flags
  commands = _documented_commands()
  assert len(commands) >= 20 and {name for name, _ in commands} >= {"modernbert_mlm.py", "causal_lm.py",
                                                                    "mdlm.py", "asarm.py", "cot2.py"}
  for name, argv in commands:
    config_arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "configs/modernbert_mlm.py")
    path, _, arg = config_arg.partition(":")
    config = importlib.import_module(f"configs.{pathlib.Path(path).stem}").get_config(arg or None)
    for a in argv:
      assert a.startswith("--"), (name, a)
      key, _, value = a[2:].partition("=")
      if key.startswith("config."):
        node = config
        for part in key[len("config."):].split("."):
          assert part in node, f"{name}: {a} names no key of {config_arg}"
          node = node[part]
      elif key != "config":
        assert key in flags.FLAGS, f"{name}: {a} is not a launch.py flag"
      assert "\\n" not in value, f"{name}: {a} passes a literal backslash-n"
  del launch


@pytest.mark.slow   # ~7 min: every documented command, in order, on the embedded data
def test_every_documented_command_runs_at_a_few_steps(tmp_path):
  """Each config docstring's commands run as documented (the README's item 7 walk), in their order (a file whose
  commands start from another's run after it), with every /tmp path moved under tmp_path (the command line's and
  the config's own defaults, e.g. ADJUST's base run), training cut to 2 steps and trajectory files to 8."""
  failures = walk_documented_commands(str(tmp_path))
  assert not failures, "\n".join(failures)


def walk_documented_commands(root: str, only: tuple[str, ...] = ()) -> list[str]:
  import subprocess
  import sys

  from tests.helpers import ROOT, subprocess_env
  after = {"adjust.py": 1, "modernbert_finetune.py": 1, "electra_finetune.py": 1}   # they start from others' runs
  failures = []
  for name, argv in sorted(_documented_commands(), key=lambda c: after.get(c[0], 0)):
    if only and name not in only:
      continue
    argv = [a.replace("=/tmp/", f"={root}/") for a in argv]
    modes = [a.split("=", 1)[1] for a in argv if a.startswith("--mode=")]
    if not modes or modes == ["train"]:
      argv += ["--config.train.num_steps=2", "--config.train.eval_every=2", "--config.train.checkpoint_every=2"]
      config_arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "configs/modernbert_mlm.py")
      path, _, arg = config_arg.partition(":")
      config = importlib.import_module(f"configs.{pathlib.Path(path).stem}").get_config(arg or None)
      given = {a.split("=", 1)[0] for a in argv}
      for key in ("checkpoint.init_from", "objective.trajectory_file"):   # the config's own /tmp defaults
        node = config
        for part in key.split("."):
          node = node.get(part) if hasattr(node, "get") else None
        if isinstance(node, str) and node.startswith("/tmp/") and f"--config.{key}" not in given:
          argv.append(f"--config.{key}={root}/{node[len('/tmp/'):]}")
    argv = [("--config.decode.trajectories=8" if a.startswith("--config.decode.trajectories=") else a) for a in argv]
    r = subprocess.run([sys.executable, "launch.py", *argv], capture_output=True, text=True, cwd=ROOT,
                       env=subprocess_env(), timeout=900)
    if r.returncode != 0 or "Traceback" in r.stderr:
      failures.append(f"{name}: {' '.join(argv)}: {r.stderr.strip().splitlines()[-1:]}")
  return failures
