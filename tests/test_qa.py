"""Extractive QA: BertForSpanQA against Hugging Face's BertForQuestionAnswering with the same
weights; the span loss against PyTorch's cross-entropy; the best span against a brute-force search."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import transformers
from test_bert import hf_config, hf_encoder_names, load_into_hugging_face, padded_pair_batch, randomise_, tiny_config

from llm_tutorial.models.bert import Bert
from llm_tutorial.models.qa import BertForSpanQA, SpanQAHead, best_span, span_loss
from llm_tutorial.train.objectives import span_qa_loss


def hf_qa_state_dict(model: BertForSpanQA) -> dict[str, torch.Tensor]:
    """Our parameters under the names of Hugging Face's ``BertForQuestionAnswering``."""
    names = hf_encoder_names(model.config.n_layer) | {
        "qa_outputs.weight": "head.score.weight",
        "qa_outputs.bias": "head.score.bias",
    }
    ours = model.state_dict()
    return {theirs: ours[mine] for theirs, mine in names.items()}


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_matches_hugging_face_bert_for_question_answering(dtype: torch.dtype, tolerance: float) -> None:
    gen = torch.Generator().manual_seed(0)
    config = tiny_config()
    model = BertForSpanQA(config).eval()
    randomise_(model, gen)
    reference = transformers.BertForQuestionAnswering(hf_config(config)).eval()
    load_into_hugging_face(reference, hf_qa_state_dict(model), model, dtype)

    ids, types, mask = padded_pair_batch(gen, config.vocab_size)
    starts = torch.tensor([9, 10, 2])
    ends = torch.tensor([11, 10, 5])
    with torch.no_grad():
        ours = model(ids, types, mask)
        theirs = reference(input_ids=ids, token_type_ids=types, attention_mask=mask.long(),
                           start_positions=starts, end_positions=ends)
    start_error = (ours.start_logits - theirs.start_logits)[mask].abs().max().item()
    end_error = (ours.end_logits - theirs.end_logits)[mask].abs().max().item()
    loss_error = abs(span_loss(ours.start_logits, ours.end_logits, starts, ends).item() - theirs.loss.item())
    print(f"BertForSpanQA vs HF ({dtype}): max |Δ| start {start_error:.2e}, end {end_error:.2e}, loss {loss_error:.2e}")
    assert start_error < tolerance and end_error < tolerance and loss_error < tolerance


def test_span_loss_is_the_mean_of_two_cross_entropies() -> None:
    gen = torch.Generator().manual_seed(1)
    start_logits, end_logits = torch.randn(2, 5, 13, generator=gen, dtype=torch.float64)
    starts = torch.randint(0, 7, (5,), generator=gen)
    ends = starts + torch.randint(0, 6, (5,), generator=gen)
    expected = (F.cross_entropy(start_logits, starts) + F.cross_entropy(end_logits, ends)) / 2
    torch.testing.assert_close(span_loss(start_logits, end_logits, starts, ends), expected)


def brute_force_best_span(start: list[float], end: list[float], allowed: list[bool], max_len: int) -> tuple[int, int]:
    best, best_score = None, float("-inf")
    for i in range(len(start)):
        for j in range(i, min(i + max_len, len(end))):
            if allowed[i] and allowed[j] and start[i] + end[j] > best_score:
                best, best_score = (i, j), start[i] + end[j]
    return best


@pytest.mark.parametrize("T, max_len", [(1, 1), (7, 1), (11, 3), (23, 30)])
def test_best_span_equals_a_brute_force_search(T: int, max_len: int) -> None:
    gen = torch.Generator().manual_seed(T)
    B = 5
    start_logits, end_logits = torch.randn(2, B, T, generator=gen)
    allowed = torch.rand(B, T, generator=gen) < 0.6
    allowed[:, -1] = True  # at least one allowed position per row
    starts, ends = best_span(start_logits, end_logits, allowed, max_len)
    for b in range(B):
        expected = brute_force_best_span(start_logits[b].tolist(), end_logits[b].tolist(), allowed[b].tolist(), max_len)
        assert (starts[b].item(), ends[b].item()) == expected


def test_a_pretrained_encoder_is_kept_and_the_head_is_trained_on_top(one_thread: None) -> None:
    """Fine-tuning: the QA model reuses a given encoder, and the trainer's loss falls on a task
    whose answer is always a marker token (id 3) of the context and the token after it."""
    torch.manual_seed(3)
    config = tiny_config(vocab_size=20, max_len=24)
    pretrained = Bert(config).encoder
    before = {k: v.clone() for k, v in pretrained.state_dict().items()}
    model = BertForSpanQA(config, encoder=pretrained)
    assert model.encoder is pretrained
    for name, value in model.encoder.state_dict().items():
        torch.testing.assert_close(value, before[name])

    gen = torch.Generator().manual_seed(3)

    def batch(size: int) -> dict[str, torch.Tensor]:
        context = torch.randint(4, 20, (size, 16), generator=gen)
        marker = torch.randint(0, 14, (size,), generator=gen)
        context[torch.arange(size), marker] = 3
        ids = torch.cat([torch.tensor([[1, 5, 2]]).expand(size, 3), context], dim=1)  # [CLS] q [SEP] context
        types = torch.cat([torch.zeros(size, 3, dtype=torch.long), torch.ones(size, 16, dtype=torch.long)], dim=1)
        return {"input_ids": ids, "token_type_ids": types, "start_positions": marker + 3, "end_positions": marker + 4}

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        loss = span_qa_loss(model, batch(32))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_from_pretrained_copies_the_encoder_and_starts_a_fresh_head() -> None:
    """The reader computes the pre-trained encoder's hidden states exactly, its head is BERT's fresh
    initialisation (zero bias, N(0, 0.02²) weights), and training the reader leaves the source alone."""
    torch.manual_seed(5)
    config = tiny_config(vocab_size=23, max_len=11, dropout=0.0)
    bert = Bert(config)
    randomise_(bert, torch.Generator().manual_seed(5))
    source = {k: v.clone() for k, v in bert.state_dict().items()}
    reader = BertForSpanQA.from_pretrained(bert)
    assert reader.encoder is not bert.encoder
    assert set(reader.state_dict()) == {k for k in source if k.startswith("encoder.")} | {"head.score.weight", "head.score.bias"}
    ids = torch.randint(3, 23, (3, 9))
    types = (torch.arange(9) >= 4).long().expand(3, 9)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 6:] = False
    bert.eval(), reader.eval()
    torch.testing.assert_close(reader(ids, types, mask).hidden, bert(ids, types, mask).hidden)
    assert torch.count_nonzero(reader.head.score.bias) == 0
    assert 0.005 < reader.head.score.weight.std().item() < 0.05
    with torch.no_grad():
        for p in reader.parameters():
            p.add_(1.0)
    for name, value in bert.state_dict().items():
        torch.testing.assert_close(value, source[name])
    assert BertForSpanQA.from_pretrained(bert.encoder).encoder.config == config


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: BertForSpanQA(tiny_config(), encoder=Bert(tiny_config(n_layer=1)).encoder), ValueError, "differs"),
        (lambda: BertForSpanQA(tiny_config(), encoder=torch.nn.Linear(2, 2)), TypeError, "BertEncoder"),
        (lambda: BertForSpanQA({"d_model": 8}), TypeError, "BertConfig"),
        (lambda: BertForSpanQA.from_pretrained(torch.nn.Linear(2, 2)), TypeError, "a Bert or a BertEncoder"),
        (lambda: SpanQAHead(8)(torch.zeros(2, 3, 9)), ValueError, "last dimension 8"),
        (lambda: SpanQAHead(8)(torch.zeros(3, 8)), ValueError, r"3 dimensions \(B, T, d_model\)"),
        (lambda: span_loss(torch.zeros(2, 5), torch.zeros(2, 4), torch.zeros(2).long(), torch.zeros(2).long()),
         ValueError, "end_logits must have the shape"),
        (lambda: span_loss(torch.zeros(2, 5), torch.zeros(2, 5), torch.zeros(3).long(), torch.zeros(3).long()),
         ValueError, "one index per sequence"),
        (lambda: span_loss(torch.zeros(2, 5), torch.zeros(2, 5), torch.tensor([3, 1]), torch.tensor([2, 1])),
         ValueError, "end at or after its start"),
        (lambda: span_loss(torch.zeros(2, 5), torch.zeros(2, 5), torch.tensor([0, 5]), torch.tensor([1, 5])),
         ValueError, r"ids in \[0, 5\)"),
        (lambda: best_span(torch.zeros(2, 5), torch.zeros(2, 5), torch.ones(2, 5), 3), TypeError, "bool"),
        (lambda: best_span(torch.zeros(2, 5), torch.zeros(2, 5), torch.zeros(2, 5, dtype=torch.bool), 3),
         ValueError, "at least one allowed position"),
        (lambda: best_span(torch.zeros(2, 5), torch.zeros(2, 5), torch.ones(2, 5, dtype=torch.bool), 0),
         ValueError, "max_answer_length must be a positive integer"),
        (lambda: span_qa_loss(BertForSpanQA(tiny_config()), {"input_ids": torch.ones(1, 3).long()}),
         ValueError, "lacks"),
    ],
)
def test_bad_inputs(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()
