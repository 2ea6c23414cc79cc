"""ELECTRA (Clark et al., 2020): pre-training by replaced-token detection.

MLM learns from the 15% of tokens it masks and nothing else. ELECTRA turns every token into a
training signal: a small *generator* (a BERT masked LM) fills the masked positions with plausible
samples, and the *discriminator* (a BERT encoder with a per-token binary head) says for each
token whether it is the original or a replacement. After pre-training the generator is thrown
away and the discriminator is fine-tuned like BERT.

One pre-training step, for a batch of token ids ``x``:

    x_masked, labels = mask_tokens(x)                            15% selected, 80/10/10
    generator logits = G(x_masked)                               (B, T, V)
    L_gen  = mlm_loss(generator logits, labels)
    x_corr, is_replaced = replace_tokens(x_masked, labels, generator logits)   sampled, no gradient
    L_disc = rtd_loss(D(x_corr), is_replaced)                    over every real token
    L      = L_gen + λ · L_disc                                  λ = 50 in the paper

Sampling is not differentiable, so the discriminator's loss does not train the generator (it is
not a GAN); the two losses meet only in the shared embeddings, when ``share_embeddings`` is on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import (
    check_bool,
    check_generator,
    check_last_dim,
    check_positive_number,
    check_probability,
    check_token_id,
)
from ..data.pretraining_examples import mask_tokens, replace_tokens
from ..losses import IGNORE_INDEX, mlm_loss, rtd_loss
from .bert import BertConfig, BertEmbeddings, BertEncoder, MaskedLMHead, init_bert_weights


@dataclass
class ElectraConfig:
    """A generator and a discriminator (two :class:`BertConfig`) and how they are trained together.

    The generator is usually 1/4 to 1/2 of the discriminator's width (the paper's best setting):
    a generator that is too strong makes the discriminator's task too hard. With
    ``share_embeddings`` both use one embedding table (token, position and type embeddings), so
    their ``embedding_size`` must agree; each projects it to its own width.
    """

    generator: BertConfig
    discriminator: BertConfig
    mask_id: int
    special_ids: tuple[int, ...] = ()  # never masked, besides padding and [MASK]: e.g. [CLS], [SEP]
    share_embeddings: bool = True
    mask_prob: float = 0.15
    rtd_weight: float = 50.0  # λ: the discriminator's loss is ~50× smaller than the generator's
    temperature: float = 1.0  # of the generator's sampling softmax

    def __post_init__(self) -> None:
        for name in ("generator", "discriminator"):
            value = getattr(self, name)
            if isinstance(value, dict):  # from JSON
                setattr(self, name, BertConfig.from_dict(value))
            elif not isinstance(value, BertConfig):
                raise TypeError(f"{name} must be a BertConfig (or its dict), got {type(value).__name__}")
        gen, disc = self.generator, self.discriminator
        for name in ("vocab_size", "pad_id", "max_len", "type_vocab_size"):
            if getattr(gen, name) != getattr(disc, name):
                raise ValueError(
                    f"generator and discriminator must agree on {name} (the generator's samples are the "
                    f"discriminator's input), got {getattr(gen, name)} and {getattr(disc, name)}"
                )
        check_bool(self.share_embeddings, "share_embeddings")
        if self.share_embeddings and gen.embedding_size != disc.embedding_size:
            raise ValueError(
                f"share_embeddings needs equal embedding_size, got generator {gen.embedding_size} and discriminator "
                f"{disc.embedding_size}; set embedding_size in both BertConfigs (e.g. to the discriminator's d_model)"
            )
        self.special_ids = tuple(self.special_ids)
        for name, token in [("mask_id", self.mask_id), *(("special_ids", t) for t in self.special_ids)]:
            check_token_id(token, name, gen.vocab_size)
        check_probability(self.mask_prob, "mask_prob")
        check_positive_number(self.rtd_weight, "rtd_weight")
        check_positive_number(self.temperature, "temperature")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ElectraConfig:
        """The inverse of :meth:`to_dict` (e.g. from a checkpoint's JSON)."""
        return cls(**values)


class ElectraGenerator(nn.Module):
    """A small BERT masked LM: ids (B, T) -> vocabulary logits (B, T, V)."""

    def __init__(self, config: BertConfig, embeddings: BertEmbeddings | None = None) -> None:
        super().__init__()
        self.encoder = BertEncoder(config, embeddings)
        self.mlm_head = MaskedLMHead(config.d_model, self.encoder.embeddings.token, norm_eps=config.norm_eps)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.mlm_head(self.encoder(input_ids, token_type_ids, attention_mask))  # (B, T, V)


class ReplacedTokenHead(nn.Module):
    """Per-token score ``z_t = w · GELU(h_t W + b) + c``: ``sigmoid(z_t)`` = P(token t was replaced)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.dense = nn.Linear(d_model, d_model)
        self.score = nn.Linear(d_model, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        check_last_dim(hidden, "hidden", self.d_model)
        return self.score(F.gelu(self.dense(hidden))).squeeze(-1)  # (B, T, d) -> (B, T)


class ElectraDiscriminator(nn.Module):
    """A BERT encoder with a replaced-token head: ids (B, T) -> logits (B, T), > 0 means "replaced"."""

    def __init__(self, config: BertConfig, embeddings: BertEmbeddings | None = None) -> None:
        super().__init__()
        self.encoder = BertEncoder(config, embeddings)
        self.head = ReplacedTokenHead(config.d_model)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.head(self.encoder(input_ids, token_type_ids, attention_mask))  # (B, T)


class ElectraOutput(NamedTuple):
    loss: torch.Tensor  # L_gen + λ · L_disc, the quantity to minimise
    generator_loss: torch.Tensor  # MLM loss over the masked positions
    discriminator_loss: torch.Tensor  # RTD loss over the real tokens
    generator_logits: torch.Tensor  # (B, T, V)
    discriminator_logits: torch.Tensor  # (B, T)
    corrupted_ids: torch.Tensor  # (B, T) the discriminator's input
    is_replaced: torch.Tensor  # (B, T) long, the discriminator's labels
    mlm_labels: torch.Tensor  # (B, T) original ids at masked positions, IGNORE_INDEX elsewhere


class Electra(nn.Module):
    """The generator–discriminator pair and the combined pre-training loss of one step."""

    def __init__(self, config: ElectraConfig) -> None:
        super().__init__()
        if not isinstance(config, ElectraConfig):
            raise TypeError(f"config must be an ElectraConfig, got {type(config).__name__}")
        self.config = config
        self.discriminator = ElectraDiscriminator(config.discriminator)
        shared = self.discriminator.encoder.embeddings if config.share_embeddings else None
        self.generator = ElectraGenerator(config.generator, shared)
        self.apply(init_bert_weights)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        rng: torch.Generator | None = None,
    ) -> ElectraOutput:
        """Mask ``input_ids`` (B, T), let the generator fill in, let the discriminator detect.

        ``token_type_ids`` and ``attention_mask`` as in ``BertEncoder.forward`` (padding is never
        masked nor scored). ``rng`` draws the masks and the generator's samples (it is passed as
        ``generator=`` to ``mask_tokens`` and ``replace_tokens``): the same seed gives the same step.
        """
        c = self.config
        check_generator(rng, "rng")
        encoder = self.discriminator.encoder
        token_type_ids, attention_mask = encoder.check_inputs(input_ids, token_type_ids, attention_mask)
        masked_ids, labels = mask_tokens(
            input_ids, mask_id=c.mask_id, vocab_size=c.generator.vocab_size,
            special_ids=(*c.special_ids, c.generator.pad_id), mask_prob=c.mask_prob, generator=rng,
        )
        masked_ids = torch.where(attention_mask, masked_ids, input_ids)  # padding stays as it is
        labels = labels.masked_fill(~attention_mask, IGNORE_INDEX)

        generator_logits = self.generator(masked_ids, token_type_ids, attention_mask)  # (B, T, V)
        generator_loss = mlm_loss(generator_logits, labels)
        corrupted_ids, is_replaced = replace_tokens(
            masked_ids, labels, generator_logits, generator=rng, temperature=c.temperature
        )
        discriminator_logits = self.discriminator(corrupted_ids, token_type_ids, attention_mask)  # (B, T)
        discriminator_loss = rtd_loss(discriminator_logits, is_replaced, attention_mask)
        loss = generator_loss + c.rtd_weight * discriminator_loss
        return ElectraOutput(
            loss, generator_loss, discriminator_loss, generator_logits, discriminator_logits,
            corrupted_ids, is_replaced, labels,
        )

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameters of both networks, shared tensors counted once; ``non_embedding=True``
        leaves out the token, position and token-type tables."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            tables = {
                id(p): p
                for model in (self.generator, self.discriminator)
                for p in model.encoder.embeddings.parameters()
                if p.dim() == 2
            }
            total -= sum(p.numel() for p in tables.values())
        return total
