"""Data: named corpora (download, checksum, cache), batching, pre-training examples, control codes.

The examples of each pre-training objective (MLM, NSP, CLM, RTD, PLM) live in
``llm_tutorial.data.pretraining_examples``; T5's span corruption in ``llm_tutorial.data.span_corruption``.
"""

from .control import (TINY_SHAKESPEARE_PLAYS, code_prefixed_stream, label_by_anchors, speeches, split_in_blocks,
                      tiny_shakespeare_anchors, verse_or_prose)
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
    "TINY_SHAKESPEARE_PLAYS",
    "ChecksumError",
    "DataUnavailableError",
    "cache_dir",
    "code_prefixed_stream",
    "data_path",
    "encode_corpus",
    "get_batch",
    "label_by_anchors",
    "load_text",
    "load_translation_pairs",
    "normalise_chinese",
    "normalise_english",
    "pad_sequences",
    "speeches",
    "split_in_blocks",
    "split_translation_pairs",
    "tiny_shakespeare_anchors",
    "train_val_split",
    "translation_components",
    "verse_or_prose",
]
