"""Examples for controllable generation: speeches, the attribute each one carries, control codes.

CTRL (Keskar et al., 2019) steers a language model by training it on text prefixed with a
*control code* — the source or the style of the document — so that at generation time choosing the
code chooses the kind of text:

    p(x | c) = ∏_t p(x_t | c, x_<t)            (c: the control code, one token before the text)

This module builds such training data from a play corpus:

- :func:`speeches` cuts a script into speeches (``"NAME:\\ntext"``, separated by blank lines);
- :func:`label_by_anchors` gives each speech a label (e.g. its play) from a few *anchor* speakers
  who appear in one play only: plays are contiguous in the corpus, so a speech by an unknown or
  shared speaker (``"Messenger"``, ``"GLOUCESTER"``) takes the label of the anchored speeches
  around it when both agree, and none when they disagree (a play boundary);
- :func:`split_in_blocks` splits items into parts by blocks of consecutive items, so that one
  scene's speeches do not sit on both sides of a train/test split;
- :func:`verse_or_prose` labels a speech by its layout: verse lines each begin with a capital
  letter, while prose is wrapped, so its continuation lines begin lower-case;
- :func:`code_prefixed_stream` concatenates the encoded speeches into one stream of ids, each
  behind its control code (or behind nothing: the baseline without codes).

:data:`TINY_SHAKESPEARE_PLAYS` lists the nine plays of Tiny Shakespeare with their anchor speakers
and their genre in the First Folio (1623), which printed the plays in three groups: comedies,
histories and tragedies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from .._checks import check_generator, check_positive_int

# play -> (First Folio genre, speakers who appear in this play only, among Tiny Shakespeare's nine)
TINY_SHAKESPEARE_PLAYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Coriolanus": ("tragedy", ("MENENIUS", "MARCIUS", "CORIOLANUS", "COMINIUS", "VOLUMNIA", "VIRGILIA",
                               "VALERIA", "SICINIUS", "AUFIDIUS", "LARTIUS")),
    "Richard III": ("history", ("KING RICHARD III", "LADY ANNE", "BRAKENBURY", "BUCKINGHAM", "CATESBY",
                                "RICHMOND", "TYRREL", "STANLEY", "RATCLIFF")),
    "Richard II": ("history", ("KING RICHARD II", "JOHN OF GAUNT", "HENRY BOLINGBROKE", "DUKE OF AUMERLE", "BUSHY",
                               "HENRY PERCY")),
    "Romeo and Juliet": ("tragedy", ("ROMEO", "MERCUTIO", "BENVOLIO", "TYBALT", "CAPULET", "LADY CAPULET",
                                     "FRIAR LAURENCE", "Nurse", "SAMPSON", "GREGORY", "PARIS")),
    "Henry VI, Part 3": ("history", ("KING HENRY VI", "WARWICK", "CLIFFORD", "LADY GREY", "KING LEWIS XI")),
    "The Winter's Tale": ("comedy", ("ARCHIDAMUS", "LEONTES", "HERMIONE", "POLIXENES", "CAMILLO", "PAULINA", "ANTIGONUS",
                                     "AUTOLYCUS", "PERDITA", "FLORIZEL")),
    "Measure for Measure": ("comedy", ("DUKE VINCENTIO", "ANGELO", "ISABELLA", "LUCIO", "ESCALUS", "CLAUDIO",
                                       "POMPEY", "ELBOW", "MARIANA")),
    "The Taming of the Shrew": ("comedy", ("PETRUCHIO", "KATHARINA", "BAPTISTA", "TRANIO", "LUCENTIO", "BIANCA",
                                           "GRUMIO", "HORTENSIO", "GREMIO", "BIONDELLO", "SLY")),
    "The Tempest": ("comedy", ("PROSPERO", "MIRANDA", "ARIEL", "CALIBAN", "GONZALO", "ALONSO", "FERDINAND")),
}


def speeches(text: str) -> list[tuple[str, str]]:
    """The speeches of a script as ``(speaker, speech)`` pairs, in order.

    A speech is a block between blank lines whose first line is ``"SPEAKER:"``; the speech text
    (what follows that line) keeps its line breaks. Blocks without a ``NAME:`` line are skipped.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str (the whole script), got {type(text).__name__}")
    found = []
    for block in text.split("\n\n"):
        block = block.strip("\n")
        head, newline, body = block.partition("\n")
        if newline and head.endswith(":") and len(head) > 1 and body.strip():
            found.append((head[:-1], body))
    return found


def label_by_anchors(speakers: Sequence[str], anchors: Mapping[str, str]) -> list[str | None]:
    """A label per item of a contiguous sequence, from the items whose speaker is an anchor.

    An anchor speaker's items take the anchor's label. Any other item takes the label of the
    nearest anchored items before and after it when those two agree (the item lies inside one
    play), the single neighbour's label at either end of the sequence, and ``None`` when the two
    disagree (the item lies between two plays and cannot be placed honestly).
    """
    if isinstance(speakers, str) or not isinstance(speakers, Sequence):
        raise TypeError(f"speakers must be a sequence of speaker names, got {type(speakers).__name__}")
    if not isinstance(anchors, Mapping) or not anchors:
        raise ValueError("anchors must be a non-empty mapping speaker -> label")
    direct = [anchors.get(name) for name in speakers]
    before: list[str | None] = []
    last = None
    for label in direct:
        last = label if label is not None else last
        before.append(last)
    after: list[str | None] = []
    last = None
    for label in reversed(direct):
        last = label if label is not None else last
        after.append(last)
    after.reverse()
    labels = []
    for own, b, a in zip(direct, before, after):
        if own is not None:
            labels.append(own)
        elif b is None or a is None or a == b:
            labels.append(b if b is not None else a)
        else:
            labels.append(None)
    return labels


def tiny_shakespeare_anchors(level: str = "genre") -> dict[str, str]:
    """Anchor speaker -> label for :func:`label_by_anchors`: the ``"play"`` or its First Folio ``"genre"``."""
    if level not in ("play", "genre"):
        raise ValueError(f"level must be 'play' or 'genre', got {level!r}")
    return {speaker: (play if level == "play" else genre)
            for play, (genre, speakers) in TINY_SHAKESPEARE_PLAYS.items() for speaker in speakers}


def verse_or_prose(speech: str, min_lines: int = 3) -> str | None:
    """``"verse"``, ``"prose"`` or ``None``: a speech's layout, read from how its lines begin.

    In the printed plays (and Tiny Shakespeare) every verse line begins with a capital letter,
    whatever the sentence does; prose runs on and is wrapped, so a line that continues a prose
    sentence begins lower-case. The rule looks at the *continuation* lines (every line after the
    first of ``speech``, the text without its ``"SPEAKER:"`` line) that begin with a letter:

    - ``"verse"`` when none of them begins lower-case;
    - ``"prose"`` when at least half of them do;
    - ``None`` for a mixed speech (some but fewer than half), and for a speech of fewer than
      ``min_lines`` lines, too short for its layout to show.
    """
    if not isinstance(speech, str):
        raise TypeError(f"speech must be a str (the speech's text without its speaker line), got {type(speech).__name__}")
    check_positive_int(min_lines, "min_lines")
    if min_lines < 2:
        raise ValueError(f"min_lines must be ≥ 2 (a one-line speech has no continuation line), got {min_lines}")
    lines = [line.strip() for line in speech.strip("\n").split("\n")]
    if len(lines) < min_lines:
        return None
    starts = [line[0] for line in lines[1:] if line and line[0].isalpha()]
    lower = sum(c.islower() for c in starts)
    if lower == 0:
        return "verse" if starts else None
    return "prose" if 2 * lower >= len(starts) else None


def split_in_blocks(n_items: int, block_size: int, fractions: Mapping[str, float],
                    generator: torch.Generator | None = None) -> dict[str, list[int]]:
    """Split item indices ``0 … n_items−1`` into named parts by whole blocks of consecutive items.

    Neighbouring speeches share a scene, characters and topic; a split by single items would put
    near-neighbours on both sides. Here the items are cut into blocks of ``block_size`` (the last
    one may be shorter), the blocks are shuffled with ``generator``, and each part receives whole
    blocks until it holds its ``fraction`` of the blocks (the first part takes the rounding rest).
    Indices in each part are sorted, so a part keeps the corpus order.
    """
    check_positive_int(n_items, "n_items")
    check_positive_int(block_size, "block_size")
    check_generator(generator)
    if not isinstance(fractions, Mapping) or not fractions:
        raise ValueError("fractions must be a non-empty mapping part name -> fraction, e.g. {'train': 0.8, 'test': 0.2}")
    values = list(fractions.values())
    if any(not isinstance(f, (int, float)) or isinstance(f, bool) or not 0 < f <= 1 for f in values) \
            or abs(sum(values) - 1) > 1e-9:
        raise ValueError(f"fractions must be positive and add up to 1, got {dict(fractions)}")
    n_blocks = -(-n_items // block_size)
    if n_blocks < len(fractions):
        raise ValueError(f"{n_items} items in blocks of {block_size} make {n_blocks} blocks, fewer than the "
                         f"{len(fractions)} parts; use smaller blocks")
    order = torch.randperm(n_blocks, generator=generator).tolist()
    names = list(fractions)
    counts = [max(1, round(fractions[name] * n_blocks)) for name in names[1:]]
    counts.insert(0, n_blocks - sum(counts))
    if counts[0] < 1:
        raise ValueError(f"{n_blocks} blocks are too few for the fractions {dict(fractions)}; use smaller blocks")
    parts, start = {}, 0
    for name, count in zip(names, counts):
        blocks = order[start:start + count]
        start += count
        parts[name] = sorted(i for b in blocks for i in range(b * block_size, min((b + 1) * block_size, n_items)))
    return parts


def code_prefixed_stream(examples: Sequence[Sequence[int]], codes: Sequence[int] | None = None) -> torch.Tensor:
    """One stream of ids ``(N,)``: each example behind its control code, ``[c_1] x_1 [c_2] x_2 …``.

    ``examples``: the encoded examples (lists of ids, each ending with its own separator, e.g. the
    ids of ``"\\n\\n"``); ``codes``: one control-code id per example, or ``None`` for the baseline
    stream ``x_1 x_2 …`` without codes. Training a language model on windows of this stream
    (``get_batch``) is CTRL's recipe: the code is one more token of context, so the model learns
    ``p(x_t | c, x_<t)``.
    """
    if isinstance(examples, torch.Tensor) or not isinstance(examples, Sequence) or len(examples) == 0:
        raise ValueError("examples must be a non-empty list of encoded examples (lists of token ids)")
    if codes is not None:
        if isinstance(codes, torch.Tensor):
            codes = codes.tolist()
        if not isinstance(codes, Sequence) or len(codes) != len(examples):
            n = len(codes) if isinstance(codes, Sequence) else type(codes).__name__
            raise ValueError(f"codes must give one control-code id per example: {len(examples)} examples, got {n}")
    pieces: list[int] = []
    for i, ids in enumerate(examples):
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        if not isinstance(ids, Sequence) or len(ids) == 0:
            raise ValueError(f"example {i} is empty or not a list of ids; every example needs at least one token")
        if codes is not None:
            code = codes[i]
            if not isinstance(code, int) or isinstance(code, bool) or code < 0:
                raise TypeError(f"codes[{i}] must be a token id (an int ≥ 0), got {code!r}")
            pieces.append(code)
        pieces.extend(ids)
    stream = torch.tensor(pieces, dtype=torch.long)
    if (stream < 0).any():
        raise ValueError("examples hold negative token ids; encode them with the tokenizer")
    return stream
