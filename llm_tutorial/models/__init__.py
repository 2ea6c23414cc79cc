"""The book's language models, one module per model family."""

from llm_tutorial.models.bert import Bert, BertConfig, BertEncoder
from llm_tutorial.models.electra import Electra, ElectraConfig, ElectraDiscriminator, ElectraGenerator
from llm_tutorial.models.gpt import GPT, GPT_PRESETS, GPTConfig
from llm_tutorial.models.neural_lm import FeedForwardLM, FeedForwardLMConfig
from llm_tutorial.models.ngram import NGramLM
from llm_tutorial.models.prefix_classifier import PrefixClassifier, PrefixClassifierConfig
from llm_tutorial.models.permutation_lm import PermutationLM, PermutationLMConfig
from llm_tutorial.models.transformer import Transformer, TransformerConfig
from llm_tutorial.models.translation_memory import TranslationMemory
from llm_tutorial.models.vision import Captioner, CaptionerConfig, PatchEncoder, patchify
