"""Experiment configs (ml_collections). Each file's `get_config(arg)` docstring gives its command and result.

Importing this package (any config does) installs the family registry the trainer looks families up in
(models.family.family_registry): configs/families/ with configs/base.py's defaults. train/ never imports configs/.
"""
import types

from configs import base, families
from models.family import install_registry

REGISTRY = types.SimpleNamespace(check_config=families.check_config, build=families.build,
                                 registration=families.registration, base_config=base.get_base_config)
install_registry(REGISTRY)
