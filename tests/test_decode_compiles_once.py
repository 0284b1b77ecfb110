"""Every family's text decoding (`Family.decode`, what --mode=decode and the end-of-training samples run) compiles
once: a second call with the same prompts traces nothing (JAX's jaxpr-trace events are counted), because the
samplers are jitted once per model with the parameters as arguments, never closed over (the weights would be
baked into each program as constants and every call would trace and compile again)."""
import jax
import pytest

from configs import families
from tests.helpers import tiny_causal_config, tiny_config

TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"


def _configs():
  from configs import adjust, asarm, cot2, electra, mdlm

  def adjusted():   # ADJUST on a frozen MDLM: the registry asks for a base run and a trajectory file by name only
    c = adjust.get_config("tiny")
    c.unlock()
    c.checkpoint.init_from, c.objective.trajectory_file = "/nonexistent", "/nonexistent.jsonl"
    c.lock()
    return c
  return {"modernbert_mlm": tiny_config, "electra": lambda: electra.get_config("tiny"),
          "mdlm": lambda: mdlm.get_config("tiny"), "adjust": adjusted, "asarm": lambda: asarm.get_config("tiny"),
          "causal_lm": tiny_causal_config, "cot2": lambda: cot2.get_config("tiny")}


@pytest.mark.parametrize("name", ["modernbert_mlm", "electra", "mdlm", "adjust", "asarm", "causal_lm", "cot2"])
def test_a_second_decode_call_traces_nothing(name):
  from data.sources import vocab_from_config
  config = _configs()[name]()
  fam = families.build(config, vocab_from_config(config.data))
  assert fam.decode is not None and fam.prompts
  params = jax.jit(fam.init_variables)(jax.random.PRNGKey(0))["params"]
  params = jax.tree.map(lambda b: getattr(b, "value", b), params, is_leaf=lambda x: hasattr(x, "value"))
  traces = []
  listener = lambda event, secs, **kw: traces.append(event) if event == TRACE_EVENT else None  # noqa: E731
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    first = fam.decode(params, list(fam.prompts))
    before = len(traces)
    second = fam.decode(params, list(fam.prompts))
    assert len(traces) - before == 0, f"{name}: the second decode call traced {len(traces) - before} programs"
    assert before > 0          # the counter's control: the first call did trace
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert second == first       # same prompts, same seed: the same texts
