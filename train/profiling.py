"""A `jax.profiler` trace of a window of training steps (`config.profile`): steps `start_step` ..
`start_step + num_steps - 1` (the step numbers of metrics.jsonl) on process 0, written to `workdir/profile`
(TensorBoard's profile plugin and Perfetto read it), each step under a `StepTraceAnnotation`. Off when
`profile.num_steps` is 0 (the default): the loop then pays one integer comparison per step."""
import contextlib
import os

import jax


class StepProfiler:

  def __init__(self, workdir: str, start_step: int, num_steps: int):
    self.directory = os.path.join(workdir, "profile")
    self.start, self.stop = start_step, start_step + num_steps   # [start, stop) in logged step numbers
    self.enabled = num_steps > 0 and jax.process_index() == 0
    self.active = False

  def step(self, number: int):
    """Context for the step that will be logged as `number`: starts the trace at the window's first step."""
    if not self.enabled or not self.start <= number < self.stop:
      return contextlib.nullcontext()
    if not self.active:
      jax.profiler.start_trace(self.directory)
      self.active = True
    return jax.profiler.StepTraceAnnotation("train", step_num=number)

  def after(self, number: int, outputs) -> str | None:
    """After the step logged as `number` was dispatched: at the window's end, waits for it and writes the trace."""
    if self.active and number >= self.stop - 1:
      jax.block_until_ready(outputs)
      jax.profiler.stop_trace()
      self.active = False
      return f"profile of steps {self.start}-{self.stop - 1} written to {self.directory}"
    return None

  def close(self) -> None:
    if self.active:   # the run ended inside the window
      jax.profiler.stop_trace()
      self.active = False
