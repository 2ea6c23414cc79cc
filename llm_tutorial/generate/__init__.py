"""Generation: choosing tokens from a trained model.

- :mod:`.processors`  temperature, top-k, top-p, repetition penalty: pure functions on logits
- :mod:`.sampling`    :func:`generate` and :func:`stream` for a decoder-only GPT, through the KV cache
- :mod:`.beam`        :func:`beam_search` with GNMT's length penalty, for the encoder–decoder
- :mod:`.knn_lm`      the kNN-LM: a datastore of the training text's hidden states, interpolated with the LM
- :mod:`.guided`      :func:`guided_generate`: classifier-guided decoding (FUDGE) towards an attribute

Typical use::

    from llm_tutorial.generate import generate
    ids = generate(model, tokenizer.encode("ROMEO:"), max_new_tokens=200, temperature=0.8, top_k=40,
                   generator=torch.Generator().manual_seed(0))
    print(tokenizer.decode(ids.tolist()))
"""

from __future__ import annotations

from .beam import BeamSearchResult, beam_search, length_penalty
from .guided import guided_generate, guided_logits
from .knn_lm import Datastore, build_datastore, encode_stream, interpolate, knn_distribution, knn_lm_losses, knn_search
from .processors import apply_repetition_penalty, apply_temperature, process_logits, top_k_filter, top_p_filter
from .sampling import generate, stream

__all__ = [
    "BeamSearchResult",
    "Datastore",
    "apply_repetition_penalty",
    "apply_temperature",
    "beam_search",
    "build_datastore",
    "encode_stream",
    "generate",
    "guided_generate",
    "guided_logits",
    "interpolate",
    "knn_distribution",
    "knn_lm_losses",
    "knn_search",
    "length_penalty",
    "process_logits",
    "stream",
    "top_k_filter",
    "top_p_filter",
]
