"""The table that opens BENCHMARKS.md, generated from the records in bench/results/*.json (bench/record.py):
one row per headline figure, ours beside the reference measured in the same run, with the machine and the date.

  python -m bench.headline            # rewrites the block between the markers at the top of BENCHMARKS.md
  python -m bench.headline --check    # exit 1 if BENCHMARKS.md's table differs from the records
"""
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(os.path.dirname(HERE), "BENCHMARKS.md")
START, END = "<!-- headline:start (python -m bench.headline) -->", "<!-- headline:end -->"


def _fmt(x) -> str:
  if x is None:
    return "n/a"
  if isinstance(x, str):
    return x
  a = abs(x)
  return f"{x:,.0f}" if a >= 1000 else f"{x:.3g}"


def records(results_dir: str = os.path.join(HERE, "results")) -> list[dict]:
  out = []
  for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
    with open(path) as f:
      out.append(json.load(f))
  return out


def table(recs: list[dict]) -> str:
  lines = ["| benchmark | what | ours | reference | ratio | machine | date | section |",
           "|---|---|---|---|---|---|---|---|"]
  for r in recs:
    m = r.get("machine", {})
    where = m.get("summary") or (", ".join(m.get("devices", [])) if m.get("devices") != ["cpu"] else "")
    where = where or f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores"
    date = r.get("date", "?") + (" (transcribed)" if r.get("note", "").startswith("transcribed") else "")
    for h in r.get("headline", []):
      ratio = h.get("ratio")
      better = "" if ratio is None else (" (better)" if (ratio > 1) == h.get("higher_is_better", True)
                                         and ratio != 1 else "")
      ref = _fmt(h.get("reference")) + (f" ({h['reference_name']})" if h.get("reference_name") else "")
      lines.append(f"| `{r['name']}` | {h['what']} | {_fmt(h.get('ours'))} {h.get('unit', '')} | {ref} | "
                   f"{'n/a' if ratio is None else f'{ratio:.2f}x'}{better} | {where} | {date} | "
                   f"[{r['name']}](#{r['name']}) |")
  return "\n".join(lines)


def block(recs: list[dict]) -> str:
  return (f"{START}\n{table(recs)}\n\nEach row: `bench/results/<benchmark>.json` (command, commit, machine, all "
          f"figures); ratio = ours / reference, \"(better)\" where ours wins; \"(transcribed)\": measured before the "
          f"scripts wrote records, copied from that run's notes.\n{END}")


def main(argv) -> int:
  text = open(DOC).read()
  if START not in text or END not in text:
    print(f"{DOC} has no headline markers ({START} ... {END})", file=sys.stderr)
    return 1
  new = text[:text.index(START)] + block(records()) + text[text.index(END) + len(END):]
  if "--check" in argv:
    if new != text:
      print("BENCHMARKS.md's headline table differs from bench/results/*.json: run python -m bench.headline",
            file=sys.stderr)
      return 1
    return 0
  with open(DOC, "w") as f:
    f.write(new)
  print(f"wrote the headline table of {len(records())} records into {DOC}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
