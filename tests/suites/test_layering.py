"""The package layering holds (every import, lazy ones included), there are no import cycles between modules, and
train/ names no model family."""
import ast
import pathlib
import re

from configs import families

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ("data", "models", "decode", "configs", "train")
# package -> the packages it may import (itself always allowed). models/ is below decode/ and train/; data/ knows
# no model; configs/families/ (the registry) is above models, decode and data; train/ uses the registry's types.
ALLOWED = {"data": set(), "models": {"data"}, "decode": {"models", "data"},
           "configs": {"models", "decode", "data"}, "train": {"models", "data"}}   # train: the registry is installed


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
  """module -> the project modules it imports anywhere in its body."""
  out = {}
  for pkg in PACKAGES:
    for path in (ROOT / pkg).rglob("*.py"):
      mod, found = _module_name(path), set()
      for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
          found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
          found.add(node.module)
          found |= {f"{node.module}.{a.name}" for a in node.names}
      out[mod] = {m for m in found if m.split(".")[0] in PACKAGES + ("bench", "launch")}
  return out


def test_packages_import_only_downwards():
  bad = []
  for mod, deps in _imports().items():
    pkg = mod.split(".")[0]
    bad += [f"{mod} -> {d}" for d in deps if d.split(".")[0] != pkg and d.split(".")[0] not in ALLOWED[pkg]]
  assert not bad, bad


def test_no_import_cycles_between_modules():
  graph = _imports()
  mods = set(graph)
  edges = {m: {d if d in mods else d.rsplit(".", 1)[0] for d in deps} & mods - {m} for m, deps in graph.items()}
  # A package's __init__ re-exporting its own submodules is not a cycle worth reporting.
  edges = {m: {d for d in ds if not (d.startswith(m + ".") or m.startswith(d + "."))} for m, ds in edges.items()}
  state, cycle = {}, []

  def visit(m, stack):
    state[m] = "open"
    for d in edges[m]:
      if state.get(d) == "open":
        cycle.append(stack[stack.index(d):] + [d])
      elif d not in state:
        visit(d, stack + [d])
    state[m] = "done"

  for m in sorted(edges):
    if m not in state:
      visit(m, [m])
  assert not cycle, cycle


def test_train_names_no_family():
  names = set(families.registered()) | {p.name for p in (ROOT / "models").iterdir()
                                        if p.is_dir() and not p.name.startswith("_")} - {"layers", "hf"}
  names |= {"bert", "gpt", "electra", "asarm"}
  hits = []
  for path in (ROOT / "train").rglob("*.py"):
    text = path.read_text().lower()
    hits += [f"{path.name}: {n}" for n in sorted(names) if re.search(rf"\b{re.escape(n)}", text)]
  assert not hits, hits


def test_tests_import_no_oracle_from_bench():
  """Oracles and probes the tests share with benchmarks live in the library (e.g. decode/assd_exact.py), so a test
  never depends on a benchmark script."""
  import ast
  bad = []
  for path in sorted((ROOT / "tests").rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text())):
      names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
          [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
      bad += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "bench"]
  assert not bad, bad


def test_family_wiring_files_only_assemble():
  """configs/families/: each file assembles a family (module, objective, hyperparameters, data source, decode hook,
  evaluations) and defines no compiled code; behaviour lives in models/<family>/, decode/ and data/."""
  long, jitted = [], []
  for path in sorted((ROOT / "configs" / "families").glob("*.py")):
    text = path.read_text()
    if len(text.splitlines()) > 115:
      long.append(f"{path.name}: {len(text.splitlines())} lines")
    if "jax.jit" in text or "@jit" in text or "import jax" in text:
      jitted.append(path.name)
  assert not long and not jitted, (long, jitted)


def test_trainer_files_hold_one_concern_each_and_the_loop_fits_a_screen():
  """train/: the loop (`train`) reads in one screen; assembly, restore, evaluation, Hugging Face conversion and the
  mode dispatch live in their own modules, and the loop module defines nothing else of theirs."""
  import ast
  tree = ast.parse((ROOT / "train" / "loop.py").read_text())
  defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
  loop = defs["train"]
  assert loop.end_lineno - loop.lineno + 1 <= 120, loop.end_lineno - loop.lineno + 1
  elsewhere = {"build_experiment", "evaluate", "initial_state", "import_hf", "export_hf", "run", "stored_run_config"}
  assert not elsewhere & set(defs), elsewhere & set(defs)
  modes = (ROOT / "train" / "modes.py").read_text()
  assert all(f'"{m}"' in modes for m in ("train", "eval", "follow", "decode", "compile_only", "import_hf",
                                         "export_hf"))
