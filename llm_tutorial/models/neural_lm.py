"""A feed-forward neural language model in the style of Bengio et al. (2003).

Like an n-gram model it looks at a fixed window of the previous ``n - 1`` tokens, but instead of
counting it *learns* a vector for every token and a function of the window:

    e = [C(x_{t-n+1}); …; C(x_{t-1})]                  concatenated embeddings, (n-1)·d
    h = tanh(H e + b_h)                                 hidden layer
    logits = U h + W e + b                              W e: the optional direct connections
    p(x_t | window) = softmax(logits)

Similar tokens get similar vectors, so what is learned about one context transfers to unseen but
similar contexts: the generalisation counts cannot give. Positions before the start of the text
are filled with a learned "beginning" token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_positive_int, check_rank, check_token_ids


@dataclass
class FeedForwardLMConfig:
    vocab_size: int
    window: int = 5  # n - 1: how many previous tokens the model sees
    d_embed: int = 32
    d_hidden: int = 256
    direct: bool = True  # Bengio et al.'s direct embedding-to-output connections

    def __post_init__(self) -> None:
        for name in ("vocab_size", "window", "d_embed", "d_hidden"):
            check_positive_int(getattr(self, name), name)


class FeedForwardLM(nn.Module):
    """Maps token ids (B, T) to next-token logits (B, T, V); position t sees ids[t-window+1 … t]."""

    def __init__(self, config: FeedForwardLMConfig) -> None:
        super().__init__()
        self.config = config
        self.begin_id = config.vocab_size  # one extra embedding row for "before the text"
        self.embed = nn.Embedding(config.vocab_size + 1, config.d_embed)
        width = config.window * config.d_embed
        self.hidden = nn.Linear(width, config.d_hidden)
        self.output = nn.Linear(config.d_hidden, config.vocab_size)
        self.direct = nn.Linear(width, config.vocab_size, bias=False) if config.direct else None

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        check_rank(idx, "idx", 2, "(B, T)")
        check_token_ids(idx, "idx", self.config.vocab_size)
        window = self.config.window
        padded = F.pad(idx, (window - 1, 0), value=self.begin_id)  # (B, T + window - 1)
        windows = padded.unfold(1, window, 1)  # (B, T, window): the window ending at each position
        e = self.embed(windows).flatten(2)  # (B, T, window · d_embed)
        logits = self.output(torch.tanh(self.hidden(e)))  # (B, T, V)
        if self.direct is not None:
            logits = logits + self.direct(e)
        return logits

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
