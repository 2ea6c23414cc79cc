"""Byte-level BPE against independent references.

- tiktoken reads GPT-2's files with its own loader; our loader must give the same ranks and ids.
- tiktoken, given the ranks of a BPE *we* trained, must encode held-out text to our ids: this
  checks our encoder against the standard rank-based algorithm.
- A naive trainer written here (full recount of every pair after each merge, same tie-break)
  must learn the same merges as our incremental one.
- Round trips, special tokens, save/load, laziness and bad input.
"""

from __future__ import annotations

import inspect
import json
import random
import warnings
from collections import Counter

import pytest
import regex
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
from tiktoken_ext.openai_public import r50k_pat_str

from llm_tutorial.data import data_path, load_text
from llm_tutorial.tokenizers import ByteLevelBPE, CharTokenizer

EOT = "<|endoftext|>"

# Text that stresses the pre-tokeniser and multi-byte characters.
EDGE_CASES = [
    "",
    "Hello!! I'm Andrej Karpathy. It's 2022. w00t :D 🤗",
    "they're we've I'd you'll she's DON'T it’s",  # contractions, upper case, a typographic apostrophe
    "   leading, trailing   \n\n\n\t  \r\n  ",
    "a\u00a0b\u3000c\u2003d \u200b e",  # no-break, ideographic, em and zero-width spaces
    "你好，世界！机器学习很有趣。日本語のテキスト、한국어 텍스트",
    "👩‍👩‍👧‍👦 🇨🇳 🏳️‍🌈 👍🏽 ❤️",  # emoji with joiners, flags, skin tones, variation selectors
    "12345 3.14159 ٣٤٥ ½ Ⅻ",  # digits, Arabic-Indic digits, fractions, Roman numerals
    "x" * 300 + " " + "ab" * 150,  # long runs
    "\x00\x01\x7f\x80 control bytes",
    "e\u0301 combining accent, ﬁ ligature, Ω",
]


@pytest.fixture(scope="module")
def gpt2_ranks(tmp_path_factory) -> dict[bytes, int]:
    """GPT-2's ranks read by tiktoken's own loader (which wants the ``#version`` header line)."""
    merges_with_header = tmp_path_factory.mktemp("gpt2") / "vocab.bpe"
    merges_with_header.write_text("#version: 0.2\n" + data_path("gpt2-merges").read_text(encoding="utf-8"),
                                  encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIKTOKEN_CACHE_DIR", "")  # read the files, cache nothing
        return data_gym_to_mergeable_bpe_ranks(str(merges_with_header), str(data_path("gpt2-vocab")))


@pytest.fixture(scope="module")
def gpt2_reference(gpt2_ranks) -> tiktoken.Encoding:
    return tiktoken.Encoding("gpt2-local", pat_str=r50k_pat_str, mergeable_ranks=gpt2_ranks,
                             special_tokens={EOT: 50256}, explicit_n_vocab=50257)


@pytest.fixture(scope="module")
def gpt2() -> ByteLevelBPE:
    return ByteLevelBPE.from_gpt2_files(data_path("gpt2-vocab"), data_path("gpt2-merges"))


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return load_text("tinyshakespeare")


@pytest.fixture(scope="module", params=[300, 3000])
def trained(request, shakespeare) -> tuple[ByteLevelBPE, str]:
    """A BPE trained on the first 90% of Tiny Shakespeare, and the held-out last 10%."""
    split = int(0.9 * len(shakespeare))
    tokenizer = ByteLevelBPE.train(shakespeare[:split], num_merges=request.param,
                                   special_tokens=[EOT, "<pad>"], progress=False)
    return tokenizer, shakespeare[split:]


def tiktoken_of(tokenizer: ByteLevelBPE) -> tiktoken.Encoding:
    return tiktoken.Encoding("ours", pat_str=tokenizer.pattern, mergeable_ranks=tokenizer.mergeable_ranks(),
                             special_tokens=tokenizer.special_tokens)


# ------------------------------------------------------------------- GPT-2's files vs tiktoken


def test_gpt2_vocabulary_equals_tiktoken_loader(gpt2, gpt2_ranks):
    assert gpt2.vocab_size == 50257
    assert gpt2.special_tokens == {EOT: 50256}
    assert gpt2.mergeable_ranks() == gpt2_ranks
    assert gpt2.id_to_bytes(256) == b" t"  # the first merge, "Ġ t"


def test_gpt2_ids_equal_tiktoken_on_all_of_tiny_shakespeare(gpt2, gpt2_reference, shakespeare):
    ids = gpt2.encode(shakespeare)
    assert ids == gpt2_reference.encode(shakespeare)
    assert gpt2.decode(ids) == shakespeare


@pytest.mark.parametrize("text", EDGE_CASES)
def test_gpt2_ids_equal_tiktoken_on_edge_cases(gpt2, gpt2_reference, text):
    assert gpt2.encode(text) == gpt2_reference.encode(text)
    assert gpt2.decode(gpt2.encode(text)) == text


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=80))
def test_gpt2_ids_equal_tiktoken_on_random_unicode(gpt2, gpt2_reference, text):
    assert gpt2.encode(text) == gpt2_reference.encode(text)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=" \t\n\r\x0b\x0c\u00a0\u3000'sdtlvemrAZé1٣😀,.", max_size=40))
def test_gpt2_ids_equal_tiktoken_on_whitespace_and_contraction_soup(gpt2, gpt2_reference, text):
    assert gpt2.encode(text) == gpt2_reference.encode(text)


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.integers(0, 50256), max_size=30))
def test_gpt2_decode_equals_tiktoken_even_for_invalid_utf8(gpt2, gpt2_reference, ids):
    assert gpt2.decode_bytes(ids) == gpt2_reference.decode_bytes(ids)
    assert gpt2.decode(ids) == gpt2_reference.decode(ids, errors="replace")


def test_gpt2_special_tokens_like_tiktoken(gpt2, gpt2_reference):
    text = f"The end.{EOT}A new start{EOT}{EOT}"
    assert gpt2.encode(text, allowed_special="all") == gpt2_reference.encode(text, allowed_special="all")
    assert gpt2.encode(text, allowed_special={EOT}).count(50256) == 3
    as_text = gpt2.encode(text, disallowed_special=set())
    assert as_text == gpt2_reference.encode(text, disallowed_special=())
    assert 50256 not in as_text
    with pytest.raises(ValueError):
        gpt2_reference.encode(text)
    with pytest.raises(ValueError, match=r"special token '<\|endoftext\|>', which this call does not allow"):
        gpt2.encode(text)


# ------------------------------------------------------------------- our merges vs tiktoken


def test_trained_bpe_ids_equal_tiktoken_on_held_out_text(trained):
    tokenizer, held_out = trained
    reference = tiktoken_of(tokenizer)
    assert len(tokenizer.mergeable_ranks()) == tokenizer.vocab_size - 2  # every token's bytes distinct
    assert tokenizer.encode(held_out) == reference.encode(held_out)
    text = f"{held_out[:500]}{EOT}<pad>{held_out[-500:]}"
    assert tokenizer.encode(text, allowed_special="all") == reference.encode(text, allowed_special="all")


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=60))
def test_trained_bpe_ids_equal_tiktoken_on_random_unicode(trained, text):
    tokenizer, _ = trained
    assert tokenizer.encode_ordinary(text) == tiktoken_of(tokenizer).encode_ordinary(text)


# ------------------------------------------------------------------- when ranks do not fix the ids
# We merge a learned *pair*; tiktoken merges any two parts whose *joined bytes* are a token. The two
# agree only if every token is reached through its own merge (module docstring of tokenizers.bpe).


def test_pair_ranks_and_byte_ranks_differ_when_a_token_is_not_reached_by_its_own_merge():
    # "bc" is learned before "ab", so "abc" becomes (a, bc), a pair that was never merged; tiktoken
    # joins a + bc to the token "abc" anyway.
    tokenizer = ByteLevelBPE([(b"b", b"c"), (b"a", b"b"), (b"ab", b"c")])
    reference = tiktoken_of(tokenizer)
    assert tokenizer.encode("abc") == [97, 256]
    assert reference.encode("abc") == [258]
    assert tokenizer.encode("xabcx") == [120, 97, 256, 120]
    assert reference.encode("xabcx") == [120, 258, 120]
    assert tokenizer.tokens_not_encoding_to_themselves() == [258]


def test_condition_holds_for_a_vocabulary_where_both_rules_agree():
    tokenizer = ByteLevelBPE([(b"a", b"b"), (b"b", b"c"), (b"ab", b"c")])  # "ab" first: abc = ab + c
    assert tokenizer.tokens_not_encoding_to_themselves() == []
    reference = tiktoken_of(tokenizer)
    for text in ("abc", "abcabc", "bcab", "aabcc", "cba"):
        assert tokenizer.encode(text) == reference.encode(text), text


def test_condition_holds_for_gpt2_merges(gpt2):
    assert gpt2.tokens_not_encoding_to_themselves() == []


def test_condition_holds_for_trained_merges(trained):
    tokenizer, _ = trained
    assert tokenizer.tokens_not_encoding_to_themselves() == []


# ------------------------------------------------------------------- training vs a naive reference


def naive_merges(texts: list[str], num_merges: int, special_tokens: list[str] = ()) -> list[tuple[bytes, bytes]]:
    """Textbook BPE training: recount every pair after every merge. Tokens are their bytes; ties go
    to the smallest (left bytes, right bytes), as documented for the package."""
    if special_tokens:
        cut = "|".join(regex.escape(token) for token in special_tokens)
        texts = [part for text in texts for part in regex.split(cut, text)]
    counts = Counter(piece.encode("utf-8") for text in texts for piece in regex.findall(r50k_pat_str, text))
    words = {word: [bytes([b]) for b in word] for word in counts}
    merges = []
    for _ in range(num_merges):
        pair_counts = Counter()
        for word, parts in words.items():
            for pair in zip(parts, parts[1:]):
                pair_counts[pair] += counts[word]
        if not pair_counts:
            break
        best = min(pair_counts, key=lambda pair: (-pair_counts[pair], pair))
        merges.append(best)
        for word, parts in words.items():
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            words[word] = merged
    return merges


def train_quietly(texts, num_merges, **options) -> ByteLevelBPE:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # running out of pairs early is expected on tiny texts
        return ByteLevelBPE.train(texts, num_merges=num_merges, progress=False, **options)


@settings(max_examples=150, deadline=None)
@given(
    texts=st.lists(st.text(alphabet="aab bc\n'sé😀 1", max_size=50), max_size=4),
    num_merges=st.integers(0, 40),
)
def test_incremental_training_equals_full_recount_on_random_texts(texts, num_merges):
    assert train_quietly(texts, num_merges).merges == naive_merges(texts, num_merges)


def test_incremental_training_equals_full_recount_on_shakespeare(shakespeare):
    start = random.Random(0).randrange(len(shakespeare) - 20_000)
    text = shakespeare[start:start + 20_000]
    expected = naive_merges([text], 150)
    assert train_quietly(text, 150).merges == expected
    assert len(expected) == 150


def test_special_tokens_are_cut_out_before_training():
    text = f"low{EOT}lower{EOT}{EOT}newest<s>widest" * 3
    specials = [EOT, "<s>"]
    tokenizer = train_quietly(text, 30, special_tokens=specials)
    assert tokenizer.merges == naive_merges([text], 30, specials)
    assert not any(b"endoftext" in left + right or b"<s" in left + right for left, right in tokenizer.merges)


def test_ties_go_to_the_smallest_pair_of_byte_strings():
    # Counts: (a,b) 2; (" ",a), (" ",c), (c,d) 1 each. Then among the 1s, b" " sorts before b"a"/b"c".
    assert train_quietly("ab ab cd", 4).merges == [(b"a", b"b"), (b" ", b"ab"), (b" ", b"c"), (b" c", b"d")]
    # All counts 1: (b" ", b"c") < (b"a", b"b"); then b" c" (0x20 ...) < b"a" (0x61).
    assert train_quietly("ab cd", 3).merges == [(b" ", b"c"), (b" c", b"d"), (b"a", b"b")]


def test_training_is_deterministic_and_ignores_text_order(shakespeare):
    texts = shakespeare[:30_000].split("\n\n")
    first = train_quietly(texts, 200).merges
    assert train_quietly(texts, 200).merges == first
    assert train_quietly(list(reversed(texts)), 200).merges == first


def test_vocab_size_counts_bytes_merges_and_specials(shakespeare):
    tokenizer = ByteLevelBPE.train(shakespeare[:5000], vocab_size=300, special_tokens=[EOT], progress=False)
    assert tokenizer.vocab_size == 300
    assert len(tokenizer.merges) == 300 - 256 - 1
    assert tokenizer.special_tokens == {EOT: 299}


def test_training_stops_with_a_warning_when_no_pair_is_left():
    with pytest.warns(UserWarning, match="only 2 of the 10 requested merges exist"):
        tokenizer = ByteLevelBPE.train("abc", num_merges=10, progress=False)
    assert tokenizer.merges == [(b"a", b"b"), (b"ab", b"c")]
    assert tokenizer.encode("abc") == [257]


# ------------------------------------------------------------------- round trips, specials, files


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.one_of(st.text(max_size=30), st.sampled_from([EOT, "<pad>"])), max_size=6))
def test_round_trip_of_arbitrary_unicode_with_special_tokens(trained, parts):
    tokenizer, _ = trained
    text = "".join(parts)
    ids = tokenizer.encode(text, allowed_special="all")
    assert tokenizer.decode(ids) == text
    assert ids.count(tokenizer.special_tokens[EOT]) == text.count(EOT)


def test_special_tokens_are_one_id_and_never_split():
    tokenizer = train_quietly("hello world " * 20, 20, special_tokens=["<s>", "<s>x", EOT])
    first = tokenizer.vocab_size - 3
    assert tokenizer.encode(EOT, allowed_special="all") == [first + 2]
    assert tokenizer.encode("<s>x<s>", allowed_special="all") == [first + 1, first]  # longest match first
    ids = tokenizer.encode(f"hello{EOT}world", allowed_special={EOT})
    assert ids.count(first + 2) == 1 and tokenizer.decode(ids) == f"hello{EOT}world"
    assert tokenizer.id_to_bytes(first + 2) == EOT.encode()


def test_decode_replaces_invalid_utf8_by_default(gpt2):
    ids = gpt2.encode("你")
    assert len(ids) == 2  # one character, three bytes, two tokens
    assert gpt2.decode(ids[:1]) == "\ufffd"
    with pytest.raises(UnicodeDecodeError):
        gpt2.decode(ids[:1], errors="strict")


def test_save_load_round_trip(trained, tmp_path):
    tokenizer, held_out = trained
    path = tokenizer.save(tmp_path / "bpe.json")
    loaded = ByteLevelBPE.load(path)
    assert loaded.merges == tokenizer.merges
    assert loaded.special_tokens == tokenizer.special_tokens
    text = held_out[:5000] + EOT
    assert loaded.encode(text, allowed_special="all") == tokenizer.encode(text, allowed_special="all")


def test_save_load_round_trip_of_gpt2_keeps_its_byte_order(gpt2, tmp_path):
    path = gpt2.save(tmp_path / "gpt2.json")
    content = json.loads(path.read_text(encoding="utf-8"))
    assert content["merges"][0] == "Ġ t" and content["byte_tokens"][0] == "!"
    loaded = ByteLevelBPE.load(path)
    assert loaded.mergeable_ranks() == gpt2.mergeable_ranks()
    assert loaded.encode(EDGE_CASES[1]) == gpt2.encode(EDGE_CASES[1])


def test_encode_lines_is_lazy(gpt2):
    lines = ["First Citizen:\n", "Before we proceed any further, hear me speak.\n", "你好\n"]
    consumed = []

    def line_source():
        for line in lines:
            consumed.append(line)
            yield line

    encoded = gpt2.encode_lines(line_source())
    assert inspect.isgenerator(encoded) and consumed == []
    assert next(encoded) == gpt2.encode(lines[0]) and consumed == lines[:1]
    assert list(encoded) == [gpt2.encode(line) for line in lines[1:]]


def test_encode_lines_reads_a_file(gpt2, tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("one line\nanother line\n", encoding="utf-8")
    with path.open(encoding="utf-8") as file:
        assert list(gpt2.encode_lines(file)) == [gpt2.encode("one line\n"), gpt2.encode("another line\n")]


# ------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"vocab_size": 100}, ValueError, r"vocab_size must be an integer ≥ 256"),
        ({"vocab_size": 256, "special_tokens": [EOT]}, ValueError, r"≥ 257 \(256 byte tokens \+ 1 special"),
        ({"vocab_size": 300, "num_merges": 10}, ValueError, "exactly one of vocab_size and num_merges"),
        ({}, ValueError, "exactly one of vocab_size and num_merges"),
        ({"num_merges": -1}, ValueError, "num_merges must be a non-negative integer"),
        ({"num_merges": 5, "special_tokens": EOT}, TypeError, "special_tokens must be a list of str"),
        ({"num_merges": 5, "special_tokens": [EOT, EOT]}, ValueError, "more than once"),
        ({"num_merges": 5, "special_tokens": [""]}, ValueError, "non-empty str"),
        ({"num_merges": 5, "pattern": "(unclosed"}, ValueError, "not a valid regular expression"),
    ],
)
def test_train_rejects_bad_options(options, error, match):
    with pytest.raises(error, match=match):
        ByteLevelBPE.train("some text", progress=False, **options)


def test_train_rejects_non_text():
    with pytest.raises(TypeError, match="each training text must be a str, got int"):
        ByteLevelBPE.train([1, 2], num_merges=3, progress=False)
    with pytest.raises(TypeError, match="texts must be a str or an iterable of str, got int"):
        ByteLevelBPE.train(5, num_merges=3, progress=False)


def test_encode_rejects_bad_input(gpt2):
    with pytest.raises(TypeError, match="text must be a str, got int"):
        gpt2.encode(123)
    with pytest.raises(TypeError, match=r"decode bytes with \.decode"):
        gpt2.encode(b"bytes")
    with pytest.raises(ValueError, match=r"not special tokens of this tokenizer"):
        gpt2.encode("hi", allowed_special={"<mask>"})
    with pytest.raises(TypeError, match="must be 'all' or a set of special tokens"):
        gpt2.encode("hi", allowed_special=EOT)
    with pytest.raises(ValueError, match="lone surrogate"):
        gpt2.encode("a\ud800b")
    with pytest.raises(TypeError, match="lines must be an iterable of str"):
        gpt2.encode_lines("one text, not lines")


def test_decode_rejects_bad_ids(gpt2):
    with pytest.raises(ValueError, match=r"token id 50257 is outside \[0, 50257\)"):
        gpt2.decode([1, 50257])
    with pytest.raises(ValueError, match=r"token id -1 is outside"):
        gpt2.id_to_bytes(-1)
    with pytest.raises(TypeError, match="ids must hold ints, got 1.5"):
        gpt2.decode([1, 1.5])
    with pytest.raises(TypeError, match="ids must be a sequence of int token ids, got str"):
        gpt2.decode("abc")
    with pytest.raises(ValueError, match="unknown errors 'bogus'"):
        gpt2.decode([1], errors="bogus")


def test_constructor_rejects_inconsistent_merges():
    with pytest.raises(ValueError, match="joins b'ab', which no earlier merge created"):
        ByteLevelBPE([(b"ab", b"c")])
    with pytest.raises(ValueError, match="creates b'ab', which is a token already"):
        ByteLevelBPE([(b"a", b"b"), (b"a", b"b")])
    with pytest.raises(TypeError, match="must be a pair of bytes"):
        ByteLevelBPE([("a", "b")])
    with pytest.raises(ValueError, match="byte_order must list each byte value 0–255 exactly once"):
        ByteLevelBPE(byte_order=[0] * 256)


def test_files_are_checked(tmp_path):
    CharTokenizer.from_text("abc").save(tmp_path / "char.json")
    with pytest.raises(ValueError, match="is not a llm_tutorial.ByteLevelBPE file"):
        ByteLevelBPE.load(tmp_path / "char.json")
    with pytest.raises(FileNotFoundError, match="no tokenizer file"):
        ByteLevelBPE.load(tmp_path / "missing.json")
    merges = data_path("gpt2-merges").read_text(encoding="utf-8").splitlines()
    swapped = tmp_path / "merges.txt"
    swapped.write_text("\n".join([merges[1], merges[0], *merges[2:]]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="vocab.json and merges.txt disagree"):
        ByteLevelBPE.from_gpt2_files(data_path("gpt2-vocab"), swapped)
    bad_line = tmp_path / "bad.txt"
    bad_line.write_text("Ġ t h\n", encoding="utf-8")
    with pytest.raises(ValueError, match="merge line 1 must be two tokens separated by one space"):
        ByteLevelBPE.from_gpt2_files(data_path("gpt2-vocab"), bad_line)
