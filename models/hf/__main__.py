"""Convert between Hugging Face directories and our checkpoints.

  # HF -> ours: writes WORKDIR/checkpoints/0 holding the weights, usable as --config.checkpoint.init_from=WORKDIR
  python -m models.hf import --family=modernbert --hf_dir=PATH --workdir=WORKDIR
  # ours -> HF: the latest checkpoint of a training workdir, as a directory transformers can load
  python -m models.hf export --family=modernbert --workdir=WORKDIR --hf_dir=PATH
Families: modernbert (ModernBertForMaskedLM), gpt2 (GPT2LMHeadModel), electra (import: an ElectraForPreTraining or
ElectraForMaskedLM directory, or with --hf_generator_dir the released pair as one joint model; export: a
configs/electra.py run as HF_DIR/discriminator and HF_DIR/generator).
"""
import json
import os

import jax
import ml_collections
from absl import app, flags

_FAMILY = flags.DEFINE_enum("family", "modernbert", ["modernbert", "gpt2", "electra"], "Model family.")
_HF_GENERATOR_DIR = flags.DEFINE_string("hf_generator_dir", None, "electra import: the generator directory.")
_HF_DIR = flags.DEFINE_string("hf_dir", None, "Hugging Face directory (config.json + model.safetensors).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Our workdir (checkpoints/ inside).")


def import_hf(hf_dir: str, workdir: str, family: str = "modernbert", generator_dir: str | None = None) -> str:
  from train.checkpoint import Checkpointer
  if family == "modernbert":
    from models.hf import load_modernbert as load
  elif family == "electra" and generator_dir:
    from models.hf import load_electra_pretraining
    load = lambda path: load_electra_pretraining(path, generator_dir)  # noqa: E731
  elif family == "electra":
    from models.hf import load_electra as load
  else:
    from models.hf import load_gpt2 as load
  model, params = load(hf_dir)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
  ckpt.save(0, {"params": params}, None, {"model_vocab_size": model.cfg.vocab_size, "source": os.path.abspath(hf_dir),
                                          "family": family})
  ckpt.close()
  return f"imported {hf_dir} into {workdir}/checkpoints/0 (use --config.checkpoint.init_from={workdir})"


def export_hf(workdir: str, hf_dir: str, family: str = "modernbert") -> str:
  from models.registry import REGISTRY
  from train.checkpoint import Checkpointer
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  step = ckpt.latest_step()
  if step is None:
    raise SystemExit(f"error: {workdir} holds no checkpoint")
  meta = ckpt.meta(step)
  config = ml_collections.ConfigDict(meta["config"])
  vocab_size = meta["model_vocab_size"]
  config.model.vocab_size = vocab_size

  class _Vocab:  # building a module from the registry needs only the vocabulary's sizes and special ids
    size, mask_id, special_ids, first_normal_id = vocab_size, 3, (0, 1, 2, 3), 4

  bundle = REGISTRY[config.model.name](config, _Vocab())
  abstract = jax.eval_shape(lambda: bundle.module.init(jax.random.PRNGKey(0),
                                                       jax.numpy.zeros((1, 8), jax.numpy.int32))["params"])
  import flax.linen as nn
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype,
                                                         sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0])),
                          nn.unbox(abstract))
  params = jax.device_get(ckpt.restore_params(step, abstract))
  ckpt.close()
  if family == "modernbert":
    from models.hf import save_modernbert as save
  elif family == "electra":
    from models.hf import save_electra_pretraining
    save = lambda module, p, path: save_electra_pretraining(  # noqa: E731
        module, p, os.path.join(path, "discriminator"), os.path.join(path, "generator"))
  else:
    from models.hf import save_gpt2 as save
  save(bundle.module, params, hf_dir)
  return f"exported {workdir} step {step} to {hf_dir}"


def main(argv):
  if len(argv) != 2 or argv[1] not in ("import", "export") or not _HF_DIR.value or not _WORKDIR.value:
    raise app.UsageError("usage: python -m models.hf import|export --family=... --hf_dir=... --workdir=...")
  if argv[1] == "import":
    msg = import_hf(_HF_DIR.value, _WORKDIR.value, _FAMILY.value, _HF_GENERATOR_DIR.value)
  else:
    msg = export_hf(_WORKDIR.value, _HF_DIR.value, _FAMILY.value)
  print(json.dumps({"ok": True, "message": msg}))


if __name__ == "__main__":
  app.run(main)
