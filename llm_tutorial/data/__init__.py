"""Data: named corpora (download, checksum, cache), batching, and pre-training examples.

The examples of each pre-training objective (MLM, NSP, CLM, RTD, PLM) live in
``llm_tutorial.data.pretraining_examples``; T5's span corruption in ``llm_tutorial.data.span_corruption``.
"""

from .batching import encode_corpus, get_batch, pad_sequences, train_val_split
from .corpora import (
    CORPORA,
    ChecksumError,
    DataUnavailableError,
    cache_dir,
    data_path,
    load_text,
    load_translation_pairs,
)
from .translation import normalise_chinese, normalise_english, split_translation_pairs, translation_components

__all__ = [
    "CORPORA",
    "ChecksumError",
    "DataUnavailableError",
    "cache_dir",
    "data_path",
    "encode_corpus",
    "get_batch",
    "load_text",
    "load_translation_pairs",
    "normalise_chinese",
    "normalise_english",
    "pad_sequences",
    "split_translation_pairs",
    "train_val_split",
    "translation_components",
]
