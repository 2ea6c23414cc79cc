"""Images as token sequences: a ViT-style patch encoder and a captioner that writes text about them.

Dosovitskiy et al. (2021, "An Image is Worth 16x16 Words") turn an image into a sequence the
Transformer already knows how to read: cut it into non-overlapping P×P patches, flatten each, and
embed it with one linear map, then add a learned position embedding per patch:

    X_p   = patchify(image, P)                        (B, N, C·P·P),  N = (H/P)·(W/P)
    Z_0   = X_p W_E + E_pos                           (B, N, d_model)
    Z_l   = Block_l(Z_{l−1}),  l = 1 … L_enc          encoder blocks: self-attention, no mask
    M     = Norm(Z_L)                                 the "memory" the text decoder attends to

A caption decoder then writes text one token at a time, attending causally to its own prefix and,
through **cross-attention**, to the patches — the image-captioning recipe of Show, Attend and Tell
(Xu et al., 2015), whose attention over image regions is what :meth:`Captioner.cross_attention_maps`
returns:

    h     = Decoder(E[y_<t] + P_pos, M)               (B, T, d_model)
    p(y_t | y_<t, image) = softmax(h Eᵀ)              (B, T, V),  output tied to the embedding

Both stacks reuse the package's :class:`~llm_tutorial.nn.TransformerBlock` (pre-norm, as ViT does).
The classification token of ViT is not needed here: the decoder reads every patch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._checks import check_divides, check_floating, check_positive_int, check_probability, check_rank, check_tensor, \
    check_token_ids
from ..nn import TransformerBlock, build_norm

__all__ = ["Captioner", "CaptionerConfig", "PatchEncoder", "patchify"]


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Split images ``(B, H, W)`` or ``(B, C, H, W)`` into flattened patches ``(B, N, C·P·P)``.

    Patches are numbered row by row (patch n covers rows ``(n // (W/P))·P …`` and columns
    ``(n % (W/P))·P …``); inside a patch the values are ordered channel, row, column.
    """
    images = check_tensor(images, "images")
    check_rank(images, "images", (3, 4), "(B, H, W) grey-scale or (B, C, H, W)")
    P = check_positive_int(patch_size, "patch_size")
    x = images[:, None] if images.dim() == 3 else images  # (B, C, H, W)
    B, C, H, W = x.shape
    if H % P or W % P:
        raise ValueError(f"the image size {H}×{W} must be divisible by patch_size={P}; pad or crop the images, "
                         f"or choose a patch size that divides both")
    x = x.reshape(B, C, H // P, P, W // P, P)  # (B, C, rows, P, cols, P)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, rows, cols, C, P, P)
    return x.reshape(B, (H // P) * (W // P), C * P * P)  # (B, N, C·P·P)


@dataclass
class CaptionerConfig:
    """Sizes of the patch encoder and the caption decoder."""

    vocab_size: int
    image_height: int
    image_width: int
    patch_size: int = 4
    channels: int = 1
    d_model: int = 64
    n_head: int = 4
    n_encoder_layer: int = 2
    n_decoder_layer: int = 2
    max_len: int = 16  # the longest caption prefix (positions 0 … max_len − 1)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "image_height", "image_width", "patch_size", "channels", "d_model", "n_head",
                     "n_encoder_layer", "n_decoder_layer", "max_len"):
            check_positive_int(getattr(self, name), name)
        check_divides(self.patch_size, self.image_height, "patch_size", "image_height")
        check_divides(self.patch_size, self.image_width, "patch_size", "image_width")
        check_divides(self.n_head, self.d_model, "n_head", "d_model")
        check_probability(self.dropout, "dropout", inclusive_high=False)

    @property
    def n_patches(self) -> int:
        return (self.image_height // self.patch_size) * (self.image_width // self.patch_size)


class PatchEncoder(nn.Module):
    """ViT-style encoder: images ``(B, [C,] H, W)`` -> patch states ``(B, N, d_model)``."""

    def __init__(self, config: CaptionerConfig) -> None:
        super().__init__()
        c = self.config = config
        self.embed = nn.Linear(c.channels * c.patch_size**2, c.d_model)  # W_E, one map for every patch
        self.position = nn.Parameter(torch.randn(c.n_patches, c.d_model) * 0.02)  # E_pos, learned
        self.blocks = nn.ModuleList(TransformerBlock.build(c.d_model, c.n_head, norm_first=True, dropout=c.dropout)
                                    for _ in range(c.n_encoder_layer))
        self.final_norm = build_norm("layernorm", c.d_model, eps=1e-5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        c = self.config
        images = check_tensor(images, "images")
        check_floating(images, "images")
        expected = (c.image_height, c.image_width) if c.channels == 1 and images.dim() == 3 else \
            (c.channels, c.image_height, c.image_width)
        if tuple(images.shape[1:]) != expected:
            raise ValueError(f"images must have shape (B, {', '.join(map(str, expected))}) for this encoder, "
                             f"got {tuple(images.shape)}")
        x = self.embed(patchify(images, c.patch_size)) + self.position  # (B, N, d_model)
        for block in self.blocks:
            x = block(x)  # every patch attends to every patch
        return self.final_norm(x)


class Captioner(nn.Module):
    """Image and caption prefix -> next-token logits: a :class:`PatchEncoder` and a decoder whose
    blocks cross-attend to its patch states."""

    def __init__(self, config: CaptionerConfig) -> None:
        super().__init__()
        if not isinstance(config, CaptionerConfig):
            raise TypeError(f"config must be a CaptionerConfig, got {type(config).__name__}")
        c = self.config = config
        self.encoder = PatchEncoder(config)
        self.token_embedding = nn.Embedding(c.vocab_size, c.d_model)
        self.position = nn.Parameter(torch.randn(c.max_len, c.d_model) * 0.02)
        self.blocks = nn.ModuleList(
            TransformerBlock.build(c.d_model, c.n_head, norm_first=True, cross_attention=True, dropout=c.dropout)
            for _ in range(c.n_decoder_layer)
        )
        self.final_norm = build_norm("layernorm", c.d_model, eps=1e-5)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight  # weight tying
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def decode(self, tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Caption prefix ``(B, T)`` and patch states ``(B, N, d_model)`` -> logits ``(B, T, V)``."""
        check_rank(check_tensor(tokens, "tokens"), "tokens", 2, "(B, T) caption token ids")
        check_token_ids(tokens, "tokens", self.config.vocab_size)
        T = tokens.size(1)
        if not 1 <= T <= self.config.max_len:
            raise ValueError(f"tokens must hold 1 to max_len={self.config.max_len} tokens per caption, got {T}")
        if memory.size(0) != tokens.size(0):
            raise ValueError(f"images and tokens must have the same batch size, got {memory.size(0)} and {tokens.size(0)}")
        x = self.token_embedding(tokens) + self.position[:T]  # (B, T, d_model)
        for block in self.blocks:
            x = block(x, is_causal=True, memory=memory)  # causal self-attention, then cross-attention to patches
        return self.lm_head(self.final_norm(x))  # (B, T, V)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: images ``(B, [C,] H, W)`` and caption inputs ``(B, T)`` -> logits ``(B, T, V)``."""
        return self.decode(tokens, self.encoder(images))

    @torch.no_grad()
    def caption(self, images: torch.Tensor, bos_id: int, length: int) -> torch.Tensor:
        """Greedy captions ``(B, length)`` (without the leading ``bos_id``); the encoder runs once."""
        length = check_positive_int(length, "length")
        if length >= self.config.max_len + 1:
            raise ValueError(f"length must be at most max_len={self.config.max_len}, got {length}")
        memory = self.encoder(images)
        out = torch.full((len(images), 1), bos_id, dtype=torch.long, device=memory.device)
        for _ in range(length):
            out = torch.cat([out, self.decode(out, memory)[:, -1].argmax(-1, keepdim=True)], 1)
        return out[:, 1:]

    @torch.no_grad()
    def cross_attention_maps(self, images: torch.Tensor, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Each decoder layer's cross-attention weights ``(B, n_head, T, N)``: for every caption
        position, how much it read each patch."""
        layers = [block.cross_attn for block in self.blocks]
        for attn in layers:
            attn.keep_weights = True
        try:
            self(images, tokens)
            return [attn.weights for attn in layers]
        finally:
            for attn in layers:
                attn.keep_weights, attn.weights = False, None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
