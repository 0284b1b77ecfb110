"""Benchmarks and research-claim reproductions (python -m bench.<name>); nothing imports this package.

Every benchmark is a CPU run unless it says otherwise: with libtpu installed (requirements-tpu.txt) JAX would probe
for a TPU at start-up, so the platform list is set first, as launch.py does (train/platforms.py)."""
from train.platforms import keep_cpu_startup_fast

keep_cpu_startup_fast()
