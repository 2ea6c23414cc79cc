"""The patch encoder and captioner (llm_tutorial.models.vision): patchify against loops, shapes,
bad inputs, and a caption that depends on the image."""

from __future__ import annotations

import pytest
import torch

from llm_tutorial.models import Captioner, CaptionerConfig, PatchEncoder, patchify


def brute_force_patches(images: torch.Tensor, P: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C·P·P) by explicit loops: patches row by row, values channel, row, column."""
    B, C, H, W = images.shape
    out = []
    for b in range(B):
        patches = []
        for r in range(H // P):
            for c in range(W // P):
                patches.append([float(images[b, ch, r * P + i, c * P + j])
                                for ch in range(C) for i in range(P) for j in range(P)])
        out.append(patches)
    return torch.tensor(out, dtype=images.dtype)


@pytest.mark.parametrize("shape,P", [((2, 1, 6, 9), 3), ((1, 3, 5, 10), 5), ((3, 2, 7, 7), 7), ((2, 1, 4, 6), 1)])
def test_patchify_matches_loops(shape, P):
    images = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    torch.testing.assert_close(patchify(images, P), brute_force_patches(images, P))
    if shape[1] == 1:  # grey-scale images may come without a channel axis
        torch.testing.assert_close(patchify(images[:, 0], P), brute_force_patches(images, P))


def test_patchify_bad_inputs():
    with pytest.raises(ValueError, match="divisible by patch_size=4"):
        patchify(torch.zeros(1, 6, 8), 4)
    with pytest.raises(ValueError, match="B, H, W"):
        patchify(torch.zeros(6, 8), 2)
    with pytest.raises(ValueError, match="patch_size"):
        patchify(torch.zeros(1, 6, 8), 0)


def small_config(**overrides) -> CaptionerConfig:
    return CaptionerConfig(**{**dict(vocab_size=13, image_height=8, image_width=12, patch_size=4, d_model=16,
                                     n_head=2, n_encoder_layer=1, n_decoder_layer=2, max_len=6), **overrides})


def test_shapes_and_attention_maps():
    torch.manual_seed(0)
    model = Captioner(small_config()).eval()
    images, tokens = torch.randn(3, 8, 12), torch.randint(0, 13, (3, 5))
    assert PatchEncoder(small_config())(images).shape == (3, 6, 16)  # 2×3 patches
    assert model(images, tokens).shape == (3, 5, 13)
    maps = model.cross_attention_maps(images, tokens)
    assert len(maps) == 2 and maps[0].shape == (3, 2, 5, 6)
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(3, 2, 5))
    captions = model.caption(images, bos_id=0, length=4)
    assert captions.shape == (3, 4)
    # The greedy caption is what teacher forcing with its own output predicts:
    logits = model(images, torch.cat([torch.zeros(3, 1, dtype=torch.long), captions[:, :-1]], 1))
    assert torch.equal(logits.argmax(-1), captions)


def test_the_caption_depends_on_the_image_and_causally_on_the_prefix():
    torch.manual_seed(1)
    model = Captioner(small_config(channels=2)).eval()
    images = torch.randn(2, 2, 8, 12, requires_grad=True)
    tokens = torch.randint(0, 13, (2, 5))
    logits = model(images, tokens)
    logits[0, 0].sum().backward()  # the first caption position: its only text is the first token
    assert images.grad[0].abs().sum() > 0, "the logits must depend on the image"
    assert images.grad[1].abs().sum() == 0, "one example's image must not reach another's caption"
    changed = tokens.clone()
    changed[:, 3:] = (changed[:, 3:] + 1) % 13
    with torch.no_grad():
        torch.testing.assert_close(model(images, changed)[:, :3], logits[:, :3].detach())  # causal
        other = model(torch.randn(2, 2, 8, 12), tokens)
    assert not torch.allclose(other, logits.detach()), "another image must change the logits"


def test_bad_inputs_get_clear_errors():
    with pytest.raises(ValueError, match="patch_size=5 must divide image_height=8"):
        small_config(patch_size=5)
    model = Captioner(small_config())
    with pytest.raises(ValueError, match=r"images must have shape \(B, 8, 12\)"):
        model(torch.zeros(1, 8, 16), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="max_len=6"):
        model(torch.zeros(1, 8, 12), torch.zeros(1, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids outside"):
        model(torch.zeros(1, 8, 12), torch.full((1, 2), 13))
    with pytest.raises(ValueError, match="same batch size"):
        model(torch.zeros(2, 8, 12), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="floating"):
        model(torch.zeros(1, 8, 12, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="CaptionerConfig"):
        Captioner({"vocab_size": 3})
