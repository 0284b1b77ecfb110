"""One generic jit-sharded trainer: mesh, state, optimiser, steps, checkpoints, loop, reporting."""
