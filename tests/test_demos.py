"""The demo notebooks run top to bottom (as Colab would)."""
import os

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import ROOT, subprocess_env


# The default job's notebook runs in the default suite; the other families' (about 50 s each on 2 cores) are slow.
@pytest.mark.parametrize("name", ["modernbert_mlm.ipynb"] + [pytest.param(n, marks=pytest.mark.slow) for n in (
    "causal_lm.ipynb", "electra.ipynb", "asarm.ipynb", "mdlm.ipynb", "lexinvariant.ipynb", "ariel.ipynb",
    "cot2.ipynb")])
def test_notebook_executes(name, monkeypatch):
  for k, v in subprocess_env(1).items():
    monkeypatch.setenv(k, v)
  nb = nbformat.read(os.path.join(ROOT, "demos", name), as_version=4)
  NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": os.path.join(ROOT, "demos")}}
                 ).execute()
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  assert "last_eval" in "".join(o.get("text", "") for o in outputs)
