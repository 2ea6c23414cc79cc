"""Controllable generation: code-prefixed data, labels from anchors, the prefix classifier, FUDGE.

References are independent of the code under test: streams and labels written out by hand, the
guided distribution by brute-force Bayes renormalisation over a tiny vocabulary, the classifier's
incremental step against a full pass over the longer prefix, and plain ``generate`` for λ = 0.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from llm_tutorial.data import (code_prefixed_stream, label_by_anchors, speeches, split_in_blocks, tiny_shakespeare_anchors,
                               verse_or_prose)
from llm_tutorial.generate import generate, guided_generate, guided_logits
from llm_tutorial.models import GPT, GPTConfig, PrefixClassifier, PrefixClassifierConfig
from llm_tutorial.train.objectives import prefix_attribute_loss

# --- data ----------------------------------------------------------------------------------------


def test_speeches_cut_a_script_at_blank_lines_and_keep_line_breaks():
    script = "First Citizen:\nBefore we proceed,\nhear me.\n\nAll:\nSpeak.\n\n\nno speaker here\n\nMENENIUS:\nWhy?\n"
    assert speeches(script) == [("First Citizen", "Before we proceed,\nhear me."), ("All", "Speak."), ("MENENIUS", "Why?")]
    with pytest.raises(TypeError, match="str"):
        speeches(b"ROMEO:\nhi")


def test_code_prefixed_stream_puts_each_code_before_its_example():
    stream = code_prefixed_stream([[1, 2], [3], [4, 5, 6]], [90, 91, 90])
    assert stream.tolist() == [90, 1, 2, 91, 3, 90, 4, 5, 6]
    assert stream.dtype == torch.long
    assert code_prefixed_stream([[1, 2], [3]]).tolist() == [1, 2, 3]  # the baseline: no codes
    assert code_prefixed_stream([torch.tensor([7, 8])], torch.tensor([9])).tolist() == [9, 7, 8]


@pytest.mark.parametrize("examples, codes, error, match", [
    ([], None, ValueError, "non-empty"),
    ([[1], []], None, ValueError, "example 1 is empty"),
    ([[1], [2]], [5], ValueError, "one control-code id per example: 2 examples, got 1"),
    ([[1]], [-1], TypeError, "codes\\[0\\]"),
    ([[1]], [1.0], TypeError, "codes\\[0\\]"),
    ([[1, -3]], None, ValueError, "negative"),
])
def test_code_prefixed_stream_refuses_bad_input(examples, codes, error, match):
    with pytest.raises(error, match=match):
        code_prefixed_stream(examples, codes)


def test_verse_or_prose_reads_how_the_continuation_lines_begin():
    verse = "Now is the winter of our discontent\nMade glorious summer by this sun of York;\nAnd all the clouds"
    prose = "I say unto you, what he hath done famously, he did\nit to that end: though soft-conscienced men can be\ncontent"
    assert verse_or_prose(verse) == "verse"
    assert verse_or_prose(prose) == "prose"
    # the first line never counts: a prose speech may begin with a capital, a verse one with anything
    assert verse_or_prose("well, sir,\nAnd so\nThen") == "verse"
    # exactly half lower-case continuation lines is prose; fewer than half is mixed
    assert verse_or_prose("A\nb\nC") == "prose"
    assert verse_or_prose("A\nb\nC\nD") is None
    # too short to tell; lines that begin with no letter are not counted; surrounding blank lines ignored
    assert verse_or_prose("One line\nand a second") is None
    assert verse_or_prose("One line\nand a second", min_lines=2) == "prose"
    assert verse_or_prose("\nA\n  'Tis so\n-- and\nThen\n") == "verse"
    assert verse_or_prose("A\n'tis\n123") is None  # no continuation line begins with a letter


def test_verse_or_prose_matches_a_brute_force_count_on_random_speeches():
    generator = torch.Generator().manual_seed(5)
    for _ in range(200):
        n = int(torch.randint(1, 7, (1,), generator=generator))
        kinds = torch.randint(0, 3, (n,), generator=generator).tolist()  # 0 upper, 1 lower, 2 a digit
        lines = [("Word" if k == 0 else "word" if k == 1 else "1 word") + " x" for k in kinds]
        later = kinds[1:]
        letters = [k for k in later if k != 2]
        if n < 3 or not letters:
            expected = None
        elif letters.count(1) == 0:
            expected = "verse"
        else:
            expected = "prose" if letters.count(1) / len(letters) >= 0.5 else None
        assert verse_or_prose("\n".join(lines)) == expected, lines


def test_verse_or_prose_refuses_bad_input():
    with pytest.raises(TypeError, match="str"):
        verse_or_prose(["A", "b"])
    with pytest.raises(ValueError, match="min_lines must be ≥ 2"):
        verse_or_prose("A\nb", min_lines=1)
    with pytest.raises((TypeError, ValueError), match="min_lines"):
        verse_or_prose("A\nb", min_lines=2.5)


def test_labels_spread_from_anchors_only_inside_one_run():
    speakers = ["Messenger", "ROMEO", "Nurse", "Servant", "ROMEO", "Lord", "PROSPERO", "Servant"]
    anchors = {"ROMEO": "R&J", "PROSPERO": "Tempest"}
    assert label_by_anchors(speakers, anchors) == ["R&J", "R&J", "R&J", "R&J", "R&J", None, "Tempest", "Tempest"]
    with pytest.raises(ValueError, match="non-empty"):
        label_by_anchors(speakers, {})
    with pytest.raises(TypeError, match="sequence"):
        label_by_anchors("ROMEO", anchors)


def test_tiny_shakespeare_anchors_name_each_speaker_once_and_map_plays_to_three_genres():
    plays, genres = tiny_shakespeare_anchors("play"), tiny_shakespeare_anchors("genre")
    assert plays.keys() == genres.keys() and len(plays) > 50
    assert set(genres.values()) == {"comedy", "history", "tragedy"}
    assert genres["PETRUCHIO"] == "comedy" and genres["KING RICHARD II"] == "history" and genres["ROMEO"] == "tragedy"
    with pytest.raises(ValueError, match="'play' or 'genre'"):
        tiny_shakespeare_anchors("act")


def test_split_in_blocks_keeps_blocks_whole_and_covers_every_item_once():
    generator = torch.Generator().manual_seed(3)
    parts = split_in_blocks(103, 10, {"train": 0.8, "validation": 0.1, "test": 0.1}, generator=generator)
    every = sorted(itertools.chain(*parts.values()))
    assert every == list(range(103))
    for indices in parts.values():
        assert indices == sorted(indices)
        blocks = {i // 10 for i in indices}
        for b in blocks:  # a part holds every item of each block it touches
            assert set(range(b * 10, min(b * 10 + 10, 103))) <= set(indices)
    assert len({i // 10 for i in parts["validation"]}) == 1 and len({i // 10 for i in parts["test"]}) == 1
    again = split_in_blocks(103, 10, {"train": 0.8, "validation": 0.1, "test": 0.1}, generator=torch.Generator().manual_seed(3))
    assert again == parts


@pytest.mark.parametrize("n, block, fractions, match", [
    (10, 5, {"a": 0.5, "b": 0.6}, "add up to 1"),
    (10, 5, {}, "non-empty"),
    (10, 5, {"a": 0.4, "b": 0.3, "c": 0.3}, "fewer than"),
    (0, 5, {"a": 1.0}, "n_items"),
])
def test_split_in_blocks_refuses_bad_input(n, block, fractions, match):
    with pytest.raises(ValueError, match=match):
        split_in_blocks(n, block, fractions)


# --- the prefix classifier ----------------------------------------------------------------------


def _classifier(vocab: int = 9, classes: int = 3) -> PrefixClassifier:
    torch.manual_seed(0)
    return PrefixClassifier(PrefixClassifierConfig(vocab_size=vocab, n_classes=classes, d_embed=5, d_hidden=7)).eval()


def test_extend_gives_what_a_full_pass_over_the_longer_prefix_gives():
    classifier = _classifier()
    prefix = torch.randint(0, 9, (2, 6), generator=torch.Generator().manual_seed(1))
    candidates = torch.tensor([[0, 4, 8], [2, 3, 5]])
    with torch.no_grad():
        log_p_start, state = classifier.start(prefix)
        log_p, states = classifier.extend(state, candidates)  # (2, 3, 3), (2, 3, 7)
        full_start = classifier(prefix)[:, -1].log_softmax(-1)
        torch.testing.assert_close(log_p_start, full_start)
        for b, j in itertools.product(range(2), range(3)):
            longer = torch.cat([prefix[b], candidates[b, j : j + 1]])[None]  # (1, 7)
            torch.testing.assert_close(log_p[b, j], classifier(longer)[0, -1].log_softmax(-1))
            torch.testing.assert_close(states[b, j], classifier.gru(classifier.embedding(longer))[0][0, -1])


def test_prefix_attribute_loss_is_the_mean_cross_entropy_over_real_positions():
    classifier = _classifier()
    ids = torch.tensor([[1, 2, 3], [4, 5, 0]])
    labels = torch.tensor([[2, 2, 2], [0, 0, -100]])
    logits = classifier(ids)
    expected = -(logits.log_softmax(-1)[0, :, 2].sum() + logits.log_softmax(-1)[1, :2, 0].sum()) / 5
    torch.testing.assert_close(prefix_attribute_loss(classifier, (ids, labels)), expected)


def test_prefix_classifier_refuses_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        PrefixClassifierConfig(vocab_size=5, n_classes=1)
    classifier = _classifier()
    with pytest.raises(ValueError, match="token ids outside"):
        classifier(torch.tensor([[1, 9]]))
    with pytest.raises(ValueError, match="dimensions"):
        classifier(torch.tensor([1, 2]))
    _, state = classifier.start(torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="state must have shape"):
        classifier.extend(state, torch.tensor([[1], [2]]))


# --- guided decoding ----------------------------------------------------------------------------


def test_guided_distribution_is_the_brute_force_bayes_renormalisation():
    """p̃(i) = p_LM(i) p(a | i)^λ / Σ_{j ∈ K} p_LM(j) p(a | j)^λ over the candidates K, 0 elsewhere."""
    generator = torch.Generator().manual_seed(5)
    V, k = 6, 4
    for strength in (0.0, 0.5, 1.0, 3.0):
        z = torch.randn(3, V, generator=generator, dtype=torch.float64)
        candidates = torch.stack([torch.randperm(V, generator=generator)[:k] for _ in range(3)])  # (3, k)
        p_attr = torch.rand(3, k, generator=generator, dtype=torch.float64) * 0.98 + 0.01
        got = guided_logits(z, candidates, p_attr.log(), strength).softmax(-1)
        p_lm = z.softmax(-1)
        for b in range(3):
            weights = {int(i): p_lm[b, i].item() * p_attr[b, j].item() ** strength for j, i in enumerate(candidates[b])}
            total = sum(weights.values())
            for i in range(V):
                assert got[b, i].item() == pytest.approx(weights.get(i, 0.0) / total, rel=1e-9, abs=1e-12)


def _tiny_lm() -> GPT:
    torch.manual_seed(1)
    return GPT(GPTConfig(vocab_size=9, context_length=24, n_layer=1, n_head=2, d_model=16)).eval()


@pytest.mark.parametrize("temperature, top_k", [(1.0, 4), (0.7, 9), (1.3, 2), (0.0, 3)])
def test_strength_zero_gives_the_tokens_of_plain_sampling(temperature, top_k):
    lm, classifier = _tiny_lm(), _classifier()
    prompt = torch.tensor([[1, 2, 3], [4, 4, 0], [8, 7, 6]])
    plain = generate(lm, prompt, 15, temperature=temperature, top_k=top_k, generator=torch.Generator().manual_seed(7))
    guided = guided_generate(lm, classifier, prompt, 15, torch.tensor([0, 1, 2]), strength=0.0, top_k=top_k,
                             temperature=temperature, generator=torch.Generator().manual_seed(7))
    assert torch.equal(plain, guided)


class ConstantClassifier:
    """p(a | anything) = the same distribution, whatever the prefix: guidance has nothing to say."""

    def __init__(self, classes: int = 3):
        self.log_p = torch.tensor([0.2, 0.5, 0.3][:classes]).log()

    def start(self, ids):
        return self.log_p.expand(ids.size(0), -1), torch.zeros(ids.size(0), 1)

    def extend(self, state, candidates):
        B, k = candidates.shape
        return self.log_p.expand(B, k, -1), torch.zeros(B, k, 1)


def test_a_constant_classifier_changes_nothing():
    z = torch.randn(2, 9, generator=torch.Generator().manual_seed(2))
    candidates = z.topk(4).indices
    constant = torch.full((2, 4), -1.2)
    torch.testing.assert_close(guided_logits(z, candidates, constant, 5.0).softmax(-1),
                               guided_logits(z, candidates, constant, 0.0).softmax(-1))
    lm, prompt = _tiny_lm(), torch.tensor([[1, 2], [3, 4]])
    plain = generate(lm, prompt, 12, top_k=9, generator=torch.Generator().manual_seed(3))
    guided = guided_generate(lm, ConstantClassifier(), prompt, 12, 1, strength=4.0, top_k=9,
                             generator=torch.Generator().manual_seed(3))
    assert (plain == guided).float().mean() > 0.9  # equal up to rounding of the shifted logits


def test_a_strong_classifier_steers_towards_its_class():
    """A classifier that loves token 5 and λ large: the guided rows write 5 far more often than plain ones."""

    class LovesFive(ConstantClassifier):
        def extend(self, state, candidates):
            B, k = candidates.shape
            p = torch.where(candidates[..., None] == 5, torch.tensor([0.9, 0.05, 0.05]), torch.tensor([0.1, 0.45, 0.45]))
            return p.log(), torch.zeros(B, k, 1)

    lm, prompt = _tiny_lm(), torch.tensor([[1, 2]] * 8)
    plain = generate(lm, prompt, 20, top_k=9, generator=torch.Generator().manual_seed(4))[:, 2:]
    guided = guided_generate(lm, LovesFive(), prompt, 20, 0, strength=6.0, top_k=9,
                             generator=torch.Generator().manual_seed(4))[:, 2:]
    assert (guided == 5).float().mean() > (plain == 5).float().mean() + 0.3


def test_single_prompt_gives_a_single_sequence():
    out = guided_generate(_tiny_lm(), _classifier(), [1, 2, 3], 5, 2, strength=1.0, top_k=3,
                          generator=torch.Generator().manual_seed(0))
    assert out.shape == (8,) and out[:3].tolist() == [1, 2, 3]


def test_guided_decoding_refuses_bad_input():
    z, candidates = torch.randn(2, 6), torch.tensor([[0, 1], [2, 3]])
    with pytest.raises(ValueError, match="≤ 0"):
        guided_logits(z, candidates, torch.tensor([[0.5, 0.5], [0.5, 0.5]]), 1.0)
    with pytest.raises(ValueError, match="strength"):
        guided_logits(z, candidates, torch.zeros(2, 2) - 1, -1.0)
    with pytest.raises(ValueError, match="match candidates"):
        guided_logits(z, candidates, torch.zeros(2, 3) - 1, 1.0)
    with pytest.raises(ValueError, match="repeat"):
        guided_logits(z, torch.tensor([[0, 0], [2, 3]]), torch.zeros(2, 2) - 1, 1.0)
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        guided_logits(z, torch.tensor([[0, 6], [2, 3]]), torch.zeros(2, 2) - 1, 1.0)
    lm, classifier = _tiny_lm(), _classifier()
    with pytest.raises(ValueError, match="class id in \\[0, 3\\)"):
        guided_generate(lm, classifier, [1, 2], 3, 3)
    with pytest.raises(ValueError, match="one per row"):
        guided_generate(lm, classifier, torch.tensor([[1, 2], [3, 4]]), 3, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="start\\(ids\\)"):
        guided_generate(lm, object(), [1, 2], 3, 0)
    with pytest.raises(ValueError, match="top_k"):
        guided_generate(lm, classifier, [1, 2], 3, 0, top_k=0)
    with pytest.raises(ValueError, match="context length"):
        guided_generate(lm, classifier, [1, 2], 30, 0)
