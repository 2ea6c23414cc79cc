"""The character tokenizer against the obvious reference: the sorted distinct characters of the
text, numbered in order (nanoGPT's ``shakespeare_char`` finds 65 of them in Tiny Shakespeare)."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_tutorial.data import load_text
from llm_tutorial.tokenizers import CharTokenizer

BERT_SPECIALS = ["<pad>", "<mask>", "<cls>", "<sep>"]


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return load_text("tinyshakespeare")


def test_alphabet_of_tiny_shakespeare(shakespeare):
    tokenizer = CharTokenizer.from_text(shakespeare)
    alphabet = sorted(set(shakespeare))
    assert tokenizer.vocab_size == len(alphabet) == 65
    assert tokenizer.chars == "".join(alphabet)
    sample = shakespeare[5000:7000]
    assert tokenizer.encode(sample) == [alphabet.index(char) for char in sample]
    assert tokenizer.decode(tokenizer.encode(shakespeare)) == shakespeare


@settings(max_examples=200, deadline=None)
@given(text=st.text(min_size=1, max_size=200))
def test_round_trip_of_arbitrary_unicode(text):
    tokenizer = CharTokenizer.from_text(text)
    ids = tokenizer.encode(text)
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text
    assert ids == [sorted(set(text)).index(char) for char in text]


def test_special_tokens_take_the_ids_after_the_characters():
    tokenizer = CharTokenizer.from_text("banana bread", special_tokens=BERT_SPECIALS)
    assert tokenizer.chars == " abdenr"
    assert tokenizer.vocab_size == 7 + 4
    assert tokenizer.special_tokens == {"<pad>": 7, "<mask>": 8, "<cls>": 9, "<sep>": 10}
    assert tokenizer.token_to_id("<mask>") == 8 and tokenizer.token_to_id("a") == 1
    ids = [tokenizer.token_to_id("<cls>"), *tokenizer.encode("bread"), tokenizer.token_to_id("<sep>")]
    assert tokenizer.decode(ids) == "<cls>bread<sep>"


def test_encode_never_produces_special_ids():
    tokenizer = CharTokenizer.from_text("<mask> is spelled with letters", special_tokens=["<mask>"])
    ids = tokenizer.encode("<mask>")
    assert len(ids) == 6 and tokenizer.special_tokens["<mask>"] not in ids


def test_decode_accepts_tensors(shakespeare):
    tokenizer = CharTokenizer.from_text(shakespeare)
    ids = torch.tensor(tokenizer.encode("To be, or not to be"))
    assert tokenizer.decode(ids) == "To be, or not to be"
    with pytest.raises(ValueError, match=r"ids must be one-dimensional \(one sequence\), got shape \(1, 19\)"):
        tokenizer.decode(ids[None])


def test_save_load_round_trip(tmp_path):
    tokenizer = CharTokenizer.from_text("你好, world!\n\t😀 ñ", special_tokens=BERT_SPECIALS)
    path = tokenizer.save(tmp_path / "char.json")
    assert json.loads(path.read_text(encoding="utf-8"))["special_tokens"] == BERT_SPECIALS
    loaded = CharTokenizer.load(path)
    assert loaded.chars == tokenizer.chars
    assert loaded.special_tokens == tokenizer.special_tokens
    assert loaded.encode("好 world😀") == tokenizer.encode("好 world😀")


def test_unknown_character_is_named(shakespeare):
    tokenizer = CharTokenizer.from_text(shakespeare)
    with pytest.raises(ValueError, match=r"character 'é' \(U\+00E9\) is not in the vocabulary of 65 characters"):
        tokenizer.encode("café")
    with pytest.raises(ValueError, match="Build the tokenizer from a text that contains it"):
        tokenizer.encode("😀")


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: CharTokenizer.from_text(""), ValueError, "text is empty"),
        (lambda: CharTokenizer.from_text(42), TypeError, "text must be a str, got int"),
        (lambda: CharTokenizer.from_text("abc", special_tokens=["a"]), ValueError, r"tokens \['a'\] are also"),
        (lambda: CharTokenizer.from_text("abc", special_tokens="<pad>"), TypeError, "must be a list of str"),
        (lambda: CharTokenizer("abca"), ValueError, r"chars must be distinct; \['a'\]"),
        (lambda: CharTokenizer(["a", "bc"]), ValueError, "single character, got 'bc'"),
        (lambda: CharTokenizer(""), ValueError, "chars is empty"),
        (lambda: CharTokenizer(5), TypeError, "chars must be a str or a sequence of characters, got int"),
    ],
)
def test_construction_rejects_bad_input(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_encode_decode_reject_bad_input():
    tokenizer = CharTokenizer.from_text("abc", special_tokens=["<pad>"])
    with pytest.raises(TypeError, match="text must be a str, got list"):
        tokenizer.encode(["a", "b"])
    with pytest.raises(ValueError, match=r"token id 4 is outside \[0, 4\)"):
        tokenizer.decode([0, 4])
    with pytest.raises(TypeError, match="ids must hold ints"):
        tokenizer.decode(["a"])
    with pytest.raises(KeyError, match="neither a character of the alphabet nor a special token"):
        tokenizer.token_to_id("<mask>")


def test_load_rejects_other_files(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "llm_tutorial.ByteLevelBPE", "version": 1}), encoding="utf-8")
    with pytest.raises(ValueError, match="is not a llm_tutorial.CharTokenizer file"):
        CharTokenizer.load(other)
    other.write_text(json.dumps({"format": "llm_tutorial.CharTokenizer", "version": 99}), encoding="utf-8")
    with pytest.raises(ValueError, match="has version 99; this code reads version 1"):
        CharTokenizer.load(other)
