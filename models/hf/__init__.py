"""Hugging Face checkpoint interop: config.json + model.safetensors directories, read and written with NumPy
(no torch needed at run time).
"""
from models.hf.electra import (electra_config, load_electra, load_electra_pretraining, save_electra,
                               save_electra_pretraining)
from models.hf.gpt2 import gpt2_config, load_gpt2, save_gpt2
from models.hf.modernbert import load_modernbert, modernbert_config, save_modernbert, save_modernbert_classifier

__all__ = ["electra_config", "load_electra", "load_electra_pretraining", "save_electra",
           "save_electra_pretraining", "gpt2_config", "load_gpt2", "save_gpt2", "load_modernbert",
           "modernbert_config", "save_modernbert", "save_modernbert_classifier"]
