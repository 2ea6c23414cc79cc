"""The book's language models, one module per model family."""

from llm_tutorial.models.gpt import GPT, GPT_PRESETS, GPTConfig
from llm_tutorial.models.neural_lm import FeedForwardLM, FeedForwardLMConfig
from llm_tutorial.models.ngram import NGramLM
