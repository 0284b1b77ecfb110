"""The AriEL spec's fixture grammar (ariel.md §5.1, a stand-in for the unpublished house-questions grammar), verbatim:
a small non-recursive CFG of questions about objects in a house, 38 words, 8,624 sentences, each with exactly one
derivation (data/sentences.py enumerates them; data/synthetic.py samples them)."""
import functools

# ariel.md §5.1, verbatim: nonterminal -> alternatives (each a tuple of symbols; quoted words are terminals).
GRAMMAR = {
    "S": [("Q", "'?'")],
    "Q": [("'is'", "'it'", "NP"), ("'is'", "'it'", "NP", "PP"), ("'is'", "'the'", "N", "ADJ"),
          ("'can'", "'you'", "V", "'the'", "N")],
    "NP": [("'the'", "N"), ("'the'", "ADJ", "N"), ("'the'", "ADJ", "ADJ", "N"), ("'a'", "N"), ("'a'", "ADJ", "N")],
    "PP": [("'in'", "'the'", "ROOM"), ("'on'", "'the'", "FURN"), ("'near'", "'the'", "FURN")],
    "ADJ": [(f"'{w}'",) for w in ("red", "blue", "green", "small", "big", "wooden", "metal", "round")],
    "N": [(f"'{w}'",) for w in ("chair", "table", "lamp", "cup", "book", "plant", "box", "ball")],
    "ROOM": [(f"'{w}'",) for w in ("kitchen", "bedroom", "bathroom", "garage")],
    "FURN": [(f"'{w}'",) for w in ("sofa", "desk", "shelf", "bed")],
    "V": [(f"'{w}'",) for w in ("see", "move", "open", "lift")],
}


@functools.cache
def grammar_words() -> tuple[str, ...]:
  """The 38 terminals in order of first appearance in GRAMMAR."""
  words: list[str] = []
  for alts in GRAMMAR.values():
    for alt in alts:
      for s in alt:
        if s.startswith("'") and s[1:-1] not in words:
          words.append(s[1:-1])
  return tuple(words)
