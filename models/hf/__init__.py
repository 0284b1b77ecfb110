"""Hugging Face checkpoint interop: config.json + model.safetensors directories, read and written with NumPy
(no torch needed at run time).

  python -m models.hf gpt2 PATH_IN PATH_OUT     # round-trips a directory through our parameters (check)
"""
from models.hf.gpt2 import gpt2_config, load_gpt2, save_gpt2

__all__ = ["gpt2_config", "load_gpt2", "save_gpt2"]
