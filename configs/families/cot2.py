"""CoT2 (models/cot2/): a GPT-2-style causal LM on the MNNS task (data.corpus=mnns, data.vocab=mnns) trained by
objective.method = "discrete" (SFT on the discrete trace), "csft" (continuous supervision) or "grpo" (policy
optimisation with objective.exploration = "mts" or "dirichlet", usually from a CSFT run: checkpoint.init_from).

The group split follows the run seed (`seed`), as in the official code where the run seed seeds Python's random.
Evaluation walks the whole validation split once: eval.batch_size x eval.num_batches must cover it."""
from configs.families import register
from configs.families.common import model_vocab_size
from models.causal_lm import CausalLm, CausalLmConfig
from models.cot2 import settings
from models.cot2.objective import EXPLORATIONS, SUPERVISIONS
from models.family import Family
from models.hparams import model_keys

METHODS = ("discrete", "csft", "grpo")
_LEXICAL = ("num_special", "embedding", "semi_fraction", "lex_embed_std", "lex_out_scale", "lex_sample")
OBJECTIVE_KEYS = {"objective.method": METHODS, "objective.supervision": SUPERVISIONS, "objective.loss_steps": None,
                  "objective.curriculum_steps": None, "objective.targets": ("uniform", "beam"),
                  "objective.beams": None, "objective.exploration": EXPLORATIONS, "objective.k": None,
                  "objective.normalize": (True, False), "objective.rollouts": None, "objective.clip_epsilon": None,
                  "objective.support_floor": None, "objective.dirichlet_scale": None}


def _source(config, task):
  from data import mnns
  from data.sources import MnnsSource
  o = config.objective
  fmt = "discrete" if o.method == "discrete" else "csft"
  if o.targets == "beam" and o.beams < 1:
    raise ValueError(f"objective.beams={o.beams} must be >= 1 with objective.targets='beam'")
  train_idx, val_idx = task.split(config.seed)
  covered = config.eval.batch_size * config.eval.num_batches
  if covered < len(val_idx):
    need = -(-len(val_idx) // config.eval.batch_size)
    raise ValueError(f"evaluation covers {covered} rows (eval.batch_size x eval.num_batches) but the MNNS validation "
                     f"split has {len(val_idx)}; raise eval.num_batches to {need}")
  rows = lambda idx: mnns.rows(task, fmt, idx, o.targets, int(o.beams))
  return MnnsSource(rows(train_idx), rows(val_idx), config.data.num_shards), fmt


def _decoder(module, vocab, task, method, prompts):
  """--mode=decode: "D2 D7 D3 D2" (or with <BOS>) -> the thoughts and the answer (decode/cot2.py). The config's
  prompts are checked now, before training, not by the closing samples after it."""
  from decode.cot2 import prompt_ids
  for p in prompts:
    try:
      prompt_ids(vocab, task, method, p)
    except ValueError as e:
      raise ValueError(f"decode.prompts: {e}") from None

  def decode(params, prompts, mesh=None):
    del mesh
    from decode.cot2 import cot2_texts
    return cot2_texts(module.apply, params, vocab, task, method, prompts)
  return decode


KEYS = {**model_keys(CausalLmConfig, exclude=_LEXICAL), **OBJECTIVE_KEYS, "decode.prompts": None}


def _check(config):
  if config.data.corpus.split(":")[0] != "mnns" or config.data.vocab != "mnns":
    raise ValueError(f"model.name='cot2' trains on the MNNS task; data.corpus={config.data.corpus!r} with data.vocab="
                     f"{config.data.vocab!r}: set data.corpus=mnns (or mnns:L:lo-hi) and data.vocab=mnns")


@register("cot2", KEYS, check=_check, smoke="configs/cot2.py:tiny")
def cot2(config, vocab) -> Family:
  from data import mnns
  task = mnns.parse(config.data.corpus)
  hp = CausalLmConfig.from_config(config.model, model_vocab_size(config, vocab), vocab.first_normal_id)
  if hp.vocab_size != vocab.size:
    raise ValueError(f"model vocabulary {hp.vocab_size} != the MNNS layout's {vocab.size} ids (targets and logits "
                     "share it): set model.vocab_multiple=1 and model.vocab_size=0")
  L = task.num_digits
  if hp.style == "gpt2" and hp.max_position_embeddings < 2 * L + 3:
    raise ValueError(f"model.max_position_embeddings={hp.max_position_embeddings} is shorter than the MNNS line "
                     f"(2L+3 = {2 * L + 3}); raise it")
  objective, evaluation = settings.objectives(config.objective, L)
  data, fmt = _source(config, task)
  module = CausalLm(hp)
  tokens = 2 * L + 3 if fmt == "discrete" else 2 * L
  if config.objective.method == "grpo":
    tokens *= int(config.objective.rollouts)
  decoder = _decoder(module, vocab, task, config.objective.method, config.decode.prompts)
  return Family("cot2", module, objective, hp, settings.batch_spec(fmt, L, hp.vocab_size), data, hp.flops_per_token,
                tokens, eval_objective=evaluation, decode=decoder, prompts=tuple(config.decode.prompts),
                compat={"model_vocab_size": hp.vocab_size})
