"""The Hugging Face readers check full tensor shapes: a tensor of the right size in the wrong layout is refused."""
import numpy as np
import pytest

from models.hf.tensors import StateDictReader


def test_full_shape_is_checked_not_only_the_size():
  d = 4
  good = np.arange(3 * d * d, dtype=np.float32).reshape(3 * d, d)          # torch Linear [out, in]
  take = StateDictReader({"w": good}, "ModernBERT")
  np.testing.assert_array_equal(take("w", (d, 3, 2, 2), True, source=(3 * d, d)), good.T.reshape(d, 3, 2, 2))
  take = StateDictReader({"w": good.T.copy()}, "ModernBERT")                # same size, transposed layout
  with pytest.raises(ValueError, match=r"ModernBERT checkpoint: w has shape \(4, 12\), expected \(12, 4\)"):
    take("w", (d, 3, 2, 2), True, source=(3 * d, d))
  take = StateDictReader({"b": np.zeros((2, 6), np.float32)}, "GPT-2")      # [2, 6] where [12] belongs
  with pytest.raises(ValueError, match=r"b has shape \(2, 6\), expected \(12,\)"):
    take("b", (3, 2, 2), source=(12,))


def test_unmapped_and_missing_keys_are_reported():
  take = StateDictReader({"a": np.zeros(2), "x.position_ids": np.zeros(2), "extra": np.zeros(1)}, "ELECTRA",
                         ("position_ids",))
  take("a", (2,))
  with pytest.raises(ValueError, match=r"ELECTRA checkpoint has keys we do not map: \['extra'\]"):
    take.check_all_used()
  with pytest.raises(KeyError, match="ELECTRA checkpoint lacks missing"):
    take("missing", (1,))
