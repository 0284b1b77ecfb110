"""The demo notebooks: their Colab setup cell, executing them in place, and the stamp that ties committed outputs
to the cell sources that made them.

  python -m demos.notebooks                     # execute every notebook in demos/ and write it back with outputs
  python -m demos.notebooks demos/mdlm.ipynb    # one notebook

Every code cell that ran is stamped with the SHA-256 of its source (`cell.metadata.lmkit.source_sha256`), so a
committed notebook whose code was edited after it ran is detected (tests/suites/test_demos.py): re-run this command and
commit the result. The first code cell is SETUP_CELL: a no-op inside a checkout, a clone + install in Colab.
"""
import hashlib
import os
import sys

DEMOS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DEMOS)
SETUP_TAG = "lmkit-setup"
SETUP_CELL = '''\
# Setup: inside a checkout of lmkit this only puts the repository on sys.path; elsewhere (Colab) it clones
# REPO_URL and installs requirements.txt first (a few minutes).
REPO_URL = "https://github.com/YOUR_ORG/lmkit.git"   # where your copy of lmkit lives
import os, subprocess, sys
ROOT = next((p for p in (os.getcwd(), os.path.dirname(os.getcwd()))
             if os.path.isfile(os.path.join(p, "launch.py"))), None)
if ROOT is None:
  subprocess.run(["git", "clone", "--depth=1", REPO_URL, "lmkit"], check=True)
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", "lmkit/requirements.txt"], check=True)
  ROOT = os.path.abspath("lmkit")
  os.chdir(ROOT)
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)'''


def source_sha(source: str) -> str:
  return hashlib.sha256(source.encode("utf-8")).hexdigest()


def stale_cells(nb) -> list[int]:
  """Indices of code cells whose committed outputs do not come from their current source (unstamped, or stamped
  with another source's hash)."""
  out = []
  for i, cell in enumerate(nb.cells):
    if cell.cell_type == "code":
      stamp = cell.get("metadata", {}).get("lmkit", {}).get("source_sha256")
      if stamp != source_sha(cell.source):
        out.append(i)
  return out


def with_setup_cell(nb):
  """The notebook with SETUP_CELL as its first code cell (replacing an older one)."""
  import nbformat
  cells = [c for c in nb.cells if SETUP_TAG not in c.get("metadata", {}).get("tags", [])]
  first_code = next(i for i, c in enumerate(cells) if c.cell_type == "code")
  cells.insert(first_code, nbformat.v4.new_code_cell(SETUP_CELL, metadata={"tags": [SETUP_TAG]}))
  nb.cells = cells
  return nb


def execute(nb, timeout: int = 900):
  """Runs the notebook top to bottom from demos/ (as Colab would from the clone) and stamps each code cell."""
  from nbclient import NotebookClient
  NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": DEMOS}}).execute()
  for cell in nb.cells:
    if cell.cell_type == "code":
      cell.metadata.setdefault("lmkit", {})["source_sha256"] = source_sha(cell.source)
  return nb


def main(paths: list[str]) -> None:
  import nbformat
  paths = paths or sorted(os.path.join(DEMOS, f) for f in os.listdir(DEMOS) if f.endswith(".ipynb"))
  env = {"PYTHONPATH": ROOT, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  os.environ.update(env)
  sys.path.insert(0, ROOT)
  from train.platforms import keep_cpu_startup_fast
  keep_cpu_startup_fast()   # the kernels inherit it: no libtpu probe (and its warnings) on a host without a TPU
  for path in paths:
    nb = with_setup_cell(nbformat.read(path, as_version=4))
    execute(nb)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    if errors:
      sys.exit(f"error: {path} raised {errors[0].get('ename')}: {errors[0].get('evalue')}")
    nbformat.write(nb, path)
    print(f"executed {path}", flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
