"""llm_tutorial: the package behind the book "LLM principles, foundations and frontiers".

One concept per module, so that a reader finds any idea's code by its name:

- ``llm_tutorial.data``        corpora, batching, the examples of each pre-training objective
- ``llm_tutorial.tokenizers``  character and byte-level BPE tokenizers
- ``llm_tutorial.nn``          attention, positional encodings, norms, MLPs, blocks
- ``llm_tutorial.models``      n-gram and feed-forward LMs, encoder–decoder, GPT, BERT, ELECTRA
- ``llm_tutorial.losses``      the loss of each objective, label smoothing, perplexity
- ``llm_tutorial.train``       the trainer, checkpoints and exact resume
- ``llm_tutorial.generate``    decoding strategies with a KV cache
- ``llm_tutorial.kernels``     Triton kernels with PyTorch fallbacks
- ``llm_tutorial.interop``     Hugging Face GPT-2 weights in and out
- ``llm_tutorial.viz``         plots used by the chapters

Importing the package imports none of the heavy optional dependencies (Triton, transformers).
"""

__version__ = "0.1.0"
