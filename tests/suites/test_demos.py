"""The demo notebooks: committed with outputs that come from their current cell sources, a Colab setup cell that
clones and installs outside a checkout, and every notebook running top to bottom (as Colab would)."""
import glob
import os
import subprocess
import sys

import nbformat
import pytest

from demos import notebooks
from tests.helpers import ROOT, subprocess_env

NOTEBOOKS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "demos", "*.ipynb")))


def test_committed_notebooks_carry_outputs_of_their_current_sources():
  """Each notebook reads on GitHub without running: every code cell ran (outputs stamped with the SHA-256 of the
  source that made them; an edited cell without a re-run is stale), none raised, and the first code cell is the
  current setup cell. Fix: python -m demos.notebooks demos/NAME.ipynb, then commit."""
  assert len(NOTEBOOKS) >= 8
  for name in NOTEBOOKS:
    nb = nbformat.read(os.path.join(ROOT, "demos", name), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].source == notebooks.SETUP_CELL, f"{name}: the first code cell is not demos/notebooks.py's setup cell"
    assert notebooks.stale_cells(nb) == [], f"{name}: cells {notebooks.stale_cells(nb)} changed since they ran"
    assert all(c.execution_count for c in code), f"{name}: a code cell never ran"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], name
    assert any(o.output_type in ("display_data", "execute_result") for o in outputs), f"{name}: no table or plot"
  # The stamp detects an edit.
  nb = nbformat.read(os.path.join(ROOT, "demos", NOTEBOOKS[0]), as_version=4)
  code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
  nb.cells[code[-1]].source += "\nprint('edited')"
  assert notebooks.stale_cells(nb) == [code[-1]]


def test_setup_cell_clones_and_installs_outside_a_checkout(tmp_path):
  """The Colab branch of the setup cell, with REPO_URL pointing at this checkout: it clones, installs
  requirements.txt (already satisfied here), and leaves the clone importable; inside a checkout it does nothing."""
  source = notebooks.SETUP_CELL.replace('REPO_URL = "https://github.com/YOUR_ORG/lmkit.git"', f"REPO_URL = {ROOT!r}")
  check = "\nimport data.vocab\nprint('ROOT=' + ROOT, 'VOCAB=' + os.path.abspath(data.vocab.__file__))"
  r = subprocess.run([sys.executable, "-c", source + check], cwd=tmp_path, capture_output=True, text=True,
                     env={k: v for k, v in subprocess_env().items() if k != "PYTHONPATH"}, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  clone = str(tmp_path / "lmkit")
  assert f"ROOT={clone} VOCAB={clone}/data/vocab.py" in r.stdout
  r = subprocess.run([sys.executable, "-c", source + check], cwd=os.path.join(ROOT, "demos"), capture_output=True,
                     text=True, env={k: v for k, v in subprocess_env().items() if k != "PYTHONPATH"}, timeout=60)
  assert r.returncode == 0 and f"ROOT={ROOT} " in r.stdout and not os.path.exists(os.path.join(ROOT, "demos", "lmkit"))


# The default job's notebook runs in the default suite; the other families' (about 50 s each on 2 cores) are slow.
@pytest.mark.parametrize("name", ["modernbert_mlm.ipynb"] + [pytest.param(n, marks=pytest.mark.slow) for n in (
    "causal_lm.ipynb", "electra.ipynb", "asarm.ipynb", "mdlm.ipynb", "lexinvariant.ipynb", "ariel.ipynb",
    "cot2.ipynb")])
def test_notebook_executes(name, monkeypatch):
  for k, v in subprocess_env(1).items():
    monkeypatch.setenv(k, v)
  nb = notebooks.execute(nbformat.read(os.path.join(ROOT, "demos", name), as_version=4), timeout=600)
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  assert notebooks.stale_cells(nb) == []
  if name == "modernbert_mlm.ipynb":
    assert "last_eval" in "".join(o.get("text", "") for o in outputs)
