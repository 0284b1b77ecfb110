"""Data: the embedded corpus, vocabularies, grain pipelines, seqio interop."""
