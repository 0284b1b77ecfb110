"""Configuration errors: raised before anything expensive runs, printed as one line naming the fix."""


class ConfigError(ValueError):
  """Bad input (config key, mesh, batch, file, checkpoint). The message names the problem and the fix."""


class NonFiniteError(FloatingPointError):
  """A step produced a non-finite loss, gradient, update or parameter; the run stopped before saving that state."""


class StorageError(RuntimeError):
  """Writing a checkpoint failed (full disk, quota, I/O error); the last committed checkpoint is intact."""
