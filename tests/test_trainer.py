"""The training loop against a hand-written reference loop, accumulation, guards, evaluation,
history and progress bar."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from llm_tutorial.data import get_batch
from llm_tutorial.train import History, NonFiniteLossError, TrainConfig, Trainer, list_checkpoints, parameter_groups
from llm_tutorial.train.trainer import EVAL_SEED_OFFSET

VOCAB, CONTEXT = 17, 6


class TinyLM(nn.Module):
    """Token + position embeddings, one residual MLP, a head: enough to have matrices, biases and
    norms (both weight-decay groups) and, on request, dropout."""

    def __init__(self, width: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, width)
        self.positions = nn.Embedding(CONTEXT, width)
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width), nn.Dropout(dropout))
        self.head = nn.Linear(width, VOCAB)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.tokens(idx) + self.positions(torch.arange(idx.shape[1]))  # (B, T, C)
        h = h + self.mlp(self.norm(h))
        return self.head(h)  # (B, T, V)


def next_token_loss(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten())


DATA = torch.randint(0, VOCAB, (500,), generator=torch.Generator().manual_seed(0))


def text_batches(batch_size: int, generator: torch.Generator):
    return get_batch(DATA, batch_size, CONTEXT, generator)


def config(**overrides) -> TrainConfig:
    settings = dict(batch_size=4, max_steps=12, lr=1e-2, min_lr=1e-3, warmup_steps=3, eval_interval=5,
                    eval_batches=2, log_interval=4, progress=False, seed=3)
    return TrainConfig(**{**settings, **overrides})


def test_matches_a_hand_written_training_loop():
    """Same init, same batches: the trainer equals plain AdamW (no fusing), the closed-form
    schedule and clip_grad_norm_, step for step."""
    torch.manual_seed(0)
    model = TinyLM()
    reference = copy.deepcopy(model)
    cfg = config(grad_clip=0.05, weight_decay=0.3, betas=(0.8, 0.9))
    history = Trainer(model, next_token_loss, text_batches, cfg).fit()

    decay = [p for p in reference.parameters() if p.ndim >= 2]
    no_decay = [p for p in reference.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.3}, {"params": no_decay, "weight_decay": 0.0}],
                                  betas=(0.8, 0.9), foreach=False, fused=False)
    generator = torch.Generator().manual_seed(cfg.seed)
    losses, norms = [], []
    for step in range(cfg.max_steps):
        lr = 1e-2 * (step + 1) / 3 if step < 3 else 1e-3 + 0.5 * 9e-3 * (1 + math.cos(math.pi * (step - 3) / 9))
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = next_token_loss(reference, get_batch(DATA, 4, CONTEXT, generator))
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.05)))
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())

    assert history.step == list(range(cfg.max_steps))
    assert history.train_loss == pytest.approx(losses, rel=1e-5)
    assert history.grad_norm == pytest.approx(norms, rel=1e-4)
    assert all(n > 0.05 for n in norms), "the test must actually clip"
    for (name, ours), theirs in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6, msg=name)


def test_gradient_accumulation_equals_one_larger_batch():
    """k micro-batches of b examples give the update of one batch of k·b (no dropout)."""
    k, b = 3, 5
    batches = [get_batch(DATA, k * b, CONTEXT, torch.Generator().manual_seed(step)) for step in range(4)]

    def whole(batch_size, generator):
        return batches.pop(0)

    chunks = [tuple(t[i * b:(i + 1) * b] for t in batch) for batch in list(batches) for i in range(k)]

    def micro(batch_size, generator):
        assert batch_size == b
        return chunks.pop(0)

    torch.manual_seed(0)
    one = TinyLM()
    accumulated = copy.deepcopy(one)
    h1 = Trainer(one, next_token_loss, whole, config(batch_size=k * b, max_steps=4, log_interval=1)).fit()
    h2 = Trainer(accumulated, next_token_loss, micro, config(batch_size=b, grad_accum_steps=k, max_steps=4,
                                                              log_interval=1)).fit()
    assert h2.train_loss == pytest.approx(h1.train_loss, rel=1e-6)
    for p1, p2 in zip(one.parameters(), accumulated.parameters()):
        torch.testing.assert_close(p2, p1, rtol=1e-5, atol=1e-6)
    assert h1.tokens_per_s and h2.tokens_per_s


def test_weight_decay_on_matrices_only():
    model = TinyLM()
    decayed, plain = parameter_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in decayed["params"]} == {
        "tokens.weight", "positions.weight", "mlp.0.weight", "mlp.2.weight", "head.weight"}
    assert {names[id(p)] for p in plain["params"]} == {"norm.weight", "norm.bias", "mlp.0.bias", "mlp.2.bias", "head.bias"}
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    trainer = Trainer(model, next_token_loss, text_batches, config())
    assert [g["weight_decay"] for g in trainer.optimizer.param_groups] == [0.1, 0.0]


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    def poisoned_at_step_7(model, batch):
        loss = next_token_loss(model, batch)
        return loss * float("nan") if trainer.step == 7 else loss

    trainer = Trainer(TinyLM(), poisoned_at_step_7, text_batches,
                      config(checkpoint_dir=str(tmp_path), checkpoint_interval=5, log_interval=10))
    with pytest.raises(NonFiniteLossError, match=r"training loss became nan at step 7 .*step_00000005, is kept") as error:
        trainer.fit()
    assert error.value.step == 7
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000005"]
    assert trainer.history.step[-1] == 6, "every finite step before the failure is recorded"


def test_non_finite_loss_without_checkpoints_says_so():
    trainer = Trainer(TinyLM(), lambda m, b: next_token_loss(m, b) * float("inf"), text_batches, config())
    with pytest.raises(NonFiniteLossError, match="at step 0 .*No checkpoint had been written"):
        trainer.fit()


@pytest.mark.parametrize("overrides, match", [
    (dict(grad_accum_steps=0), "grad_accum_steps must be a positive integer"),
    (dict(warmup_steps=20, max_steps=10), "warmup_steps must be an integer in"),
    (dict(min_lr=1.0), r"min_lr must be a number in \[0, "),
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(eval_batches=0), "eval_batches must be a positive integer"),
    (dict(precision="fp8"), "unknown precision 'fp8'"),
    (dict(betas=(0.9, 1.0)), "each of betas must be a probability"),
    (dict(betas=(0.9,)), "betas must be two numbers"),
    (dict(grad_clip=-1.0), "grad_clip must be a number ≥ 0"),
    (dict(weight_decay=-0.1), "weight_decay must be a number ≥ 0"),
    (dict(seed=1.5), "seed must be an integer"),
    (dict(keep_checkpoints=0), "keep_checkpoints must be a positive integer"),
])
def test_impossible_configurations_fail_when_built(overrides, match):
    with pytest.raises(ValueError, match=match):
        config(**overrides)


def test_bad_trainer_arguments():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        Trainer("gpt", next_token_loss, text_batches, config())
    with pytest.raises(ValueError, match="the model \\(ReLU\\) has no parameters to train"):
        Trainer(nn.ReLU(), next_token_loss, text_batches, config())
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        Trainer(TinyLM(), "clm", text_batches, config())
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        Trainer(TinyLM(), next_token_loss, text_batches, {"lr": 1e-3})
    with pytest.raises(TypeError, match="metadata must be JSON-serialisable"):
        Trainer(TinyLM(), next_token_loss, text_batches, config(), metadata={"tokenizer": object()})
    with pytest.raises(ValueError, match="precision 'fp16' needs a CUDA GPU"):
        Trainer(TinyLM(), next_token_loss, text_batches, config(precision="fp16"))
    with pytest.raises(ValueError, match="until must be an integer step in"):
        Trainer(TinyLM(), next_token_loss, text_batches, config()).fit(until=13)
    with pytest.raises(ValueError, match="evaluate\\(\\) needs val_batches"):
        Trainer(TinyLM(), next_token_loss, text_batches, config()).evaluate()


def test_bad_loss_functions_are_caught_at_the_first_step():
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar tensor .* got \(4, 6, 17\)"):
        Trainer(TinyLM(), lambda m, b: m(b[0]), text_batches, config()).fit()
    with pytest.raises(ValueError, match="does not require grad"):
        Trainer(TinyLM(), lambda m, b: next_token_loss(m, b).detach(), text_batches, config()).fit()


def test_a_fresh_run_refuses_a_directory_holding_another_run(tmp_path):
    Trainer(TinyLM(), next_token_loss, text_batches, config(checkpoint_dir=str(tmp_path), max_steps=5, warmup_steps=1)).fit()
    with pytest.raises(FileExistsError, match="already holds checkpoints of a run"):
        Trainer(TinyLM(), next_token_loss, text_batches, config(checkpoint_dir=str(tmp_path))).fit()


def test_evaluation_scores_fixed_batches_and_leaves_training_randomness_alone():
    torch.manual_seed(0)
    model = TinyLM()
    cfg = config(eval_batches=3)
    trainer = Trainer(model, next_token_loss, text_batches, cfg, val_batches=text_batches)
    state = trainer.generator.get_state()
    torch_state = torch.get_rng_state()
    first, second = trainer.evaluate(), trainer.evaluate()
    assert first == second
    assert torch.equal(trainer.generator.get_state(), state) and torch.equal(torch.get_rng_state(), torch_state)
    generator = torch.Generator().manual_seed(cfg.seed + EVAL_SEED_OFFSET)
    with torch.no_grad():
        expected = sum(next_token_loss(model, text_batches(4, generator)).item() for _ in range(3)) / 3
    assert first == pytest.approx(expected, rel=1e-6)

    history = trainer.fit()
    assert history.eval_step == [0, 0, 5, 10, 12], "no second evaluation at step 0 when one exists"
    assert len(history.val_loss) == 5 and history.val_loss[-1] < history.val_loss[0]


class HostReads(TorchDispatchMode):
    """Records every operator that makes the host wait for the device: a scalar read (``item``,
    ``int()``, ``float()``, ``bool()`` all become ``_local_scalar_dense``) and the data-dependent
    shapes of boolean indexing (``nonzero``, ``masked_select``)."""

    SYNCING = {"_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "equal", "allclose"}

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        boolean_index = name == "index" and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else []))
        if name in self.SYNCING or boolean_index:
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


def gpt_trainer(check_token_range: bool) -> Trainer:
    """The package's own GPT and the package's own causal_lm_loss, as ``python -m llm_tutorial train`` runs them."""
    from llm_tutorial.models import GPT, GPTConfig
    from llm_tutorial.train.objectives import causal_lm_loss

    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("gpt2", vocab_size=VOCAB, n_layer=1, n_head=2, d_model=16, context_length=CONTEXT))
    model.check_token_range = check_token_range
    return Trainer(model, causal_lm_loss, text_batches, config(max_steps=20, log_interval=10, warmup_steps=2))


def test_the_step_makes_no_host_sync_between_log_points(monkeypatch):
    """20 steps of GPT + causal_lm_loss: the losses are read once per log point (one .tolist()),
    and nothing else is read back from the device: no item/int/float/bool, no boolean index."""
    reads = []
    for name in ("item", "tolist", "__float__", "__int__", "__bool__", "__index__"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _o=original, _n=name, **k: reads.append(_n) or _o(self, *a, **k))
    trainer = gpt_trainer(check_token_range=False)
    with HostReads() as operators:
        trainer.fit()
    monkeypatch.undo()
    assert reads == ["tolist", "tolist"], reads
    assert operators.ops == [], operators.ops
    assert trainer.history.log_step == [9, 19]


def test_the_host_read_detector_sees_the_range_checks_it_guards_against():
    """The same run with the range checks on reads min/max of ids and labels every step (4 scalar
    reads and one boolean index per step): the detector of the test above can fail."""
    trainer = gpt_trainer(check_token_range=True)
    with HostReads() as operators:
        trainer.fit()
    assert operators.ops.count("_local_scalar_dense") == 80 and operators.ops.count("index") == 20


def test_history_records_schedule_speed_and_round_trips(tmp_path):
    cfg = config()
    trainer = Trainer(TinyLM(), next_token_loss, text_batches, cfg, val_batches=text_batches)
    trainer.fit(until=5)
    history = trainer.fit()
    assert history.lr == [cfg.schedule(s) for s in range(cfg.max_steps)]
    assert history.log_step == [3, 4, 7, 9, 11], "every log_interval=4 steps, before each evaluation, at the end"
    assert all(t > 0 for t in history.tokens_per_s)
    assert history.wall_time == sorted(history.wall_time), "wall time adds up over calls of fit"
    history.save(tmp_path / "history.json")
    assert History.load(tmp_path / "history.json") == history
    with pytest.raises(ValueError, match="unknown history fields"):
        History.from_dict({"stepz": []})


def test_history_plot_is_labelled():
    import matplotlib

    matplotlib.use("Agg")
    history = History(step=[0, 1, 2], train_loss=[3.0, 2.5, 2.0], eval_step=[0, 2], val_loss=[3.1, 2.2])
    ax = history.plot()
    assert ax.get_xlabel() == "optimizer step"
    assert "loss" in ax.get_ylabel() and ax.get_title()
    assert [line.get_label() for line in ax.get_lines()] == ["train (per step)", "validation"]


def test_progress_bar_shows_loss_and_tokens_per_second(capsys, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # test runs set it: bars are off there by design
    Trainer(TinyLM(), next_token_loss, text_batches, config(progress=True), val_batches=text_batches).fit()
    err = capsys.readouterr().err
    assert "12/12" in err and "loss=" in err and "val=" in err and "tok/s=" in err


def test_bf16_autocast_on_cpu_trains_close_to_fp32():
    torch.manual_seed(0)
    model = TinyLM()
    twin = copy.deepcopy(model)
    fp32 = Trainer(model, next_token_loss, text_batches, config(precision="fp32")).fit()
    bf16 = Trainer(twin, next_token_loss, text_batches, config(precision="bf16")).fit()
    assert bf16.train_loss == pytest.approx(fp32.train_loss, rel=2e-2)
    assert bf16.train_loss != fp32.train_loss, "bf16 autocast must really have run"
    assert all(p.dtype == torch.float32 for p in twin.parameters()), "weights stay fp32 under autocast"


class Seq2SeqStandIn(nn.Module):
    """Called like the encoder–decoder: (src, tgt_in[, src_mask]) -> target logits (B, T, V)."""

    def __init__(self) -> None:
        super().__init__()
        self.src = nn.Embedding(VOCAB, 8)
        self.tgt = nn.Embedding(VOCAB, 8)
        self.head = nn.Linear(8, VOCAB)

    def forward(self, src, tgt_in, src_mask=None):
        memory = self.src(src) if src_mask is None else self.src(src) * src_mask[..., None]
        return self.head(self.tgt(tgt_in) + memory.mean(dim=1, keepdim=True))  # (B, T, V)


class BertStandIn(nn.Module):
    """Called like Bert: (input_ids, token_type_ids, attention_mask) -> (mlm_logits, nsp_logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, 8)
        self.types = nn.Embedding(2, 8)
        self.mlm = nn.Linear(8, VOCAB)
        self.nsp = nn.Linear(8, 2)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        h = self.tokens(input_ids) + (0 if token_type_ids is None else self.types(token_type_ids))
        out = type("Out", (), {})()
        out.mlm_logits, out.nsp_logits = self.mlm(h), self.nsp(h[:, 0])
        return out


def test_objectives_delegate_to_the_losses():
    from llm_tutorial.train.objectives import (bert_pretraining_loss, causal_lm_loss, masked_lm_loss,
                                               next_sentence_loss, replaced_token_detection_loss, seq2seq_lm_loss)

    torch.manual_seed(0)
    x, y = text_batches(5, torch.Generator().manual_seed(1))
    model = TinyLM()
    torch.testing.assert_close(causal_lm_loss(model, (x, y)), next_token_loss(model, (x, y)))

    s2s = Seq2SeqStandIn()
    src, tgt_in, tgt_out = torch.randint(0, VOCAB, (3, 7)), torch.randint(0, VOCAB, (3, 5)), torch.randint(0, VOCAB, (3, 5))
    tgt_out[0, 3:] = -100  # padding is ignored
    mask = torch.rand(3, 7) > 0.3
    logits = s2s(src, tgt_in, mask)
    torch.testing.assert_close(seq2seq_lm_loss(s2s, (src, tgt_in, tgt_out, mask)),
                               F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=-100))

    bert = BertStandIn()
    ids, types = torch.randint(0, VOCAB, (4, 9)), torch.randint(0, 2, (4, 9))
    labels = torch.full((4, 9), -100)
    labels[:, 2] = ids[:, 2]
    labels[1, 5] = ids[1, 5]
    is_next = torch.tensor([1, 0, 0, 1])
    batch = {"input_ids": ids, "token_type_ids": types, "labels": labels, "is_next": is_next}
    out = bert(ids, types)
    mlm = F.cross_entropy(out.mlm_logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    nsp = F.cross_entropy(out.nsp_logits, is_next)
    torch.testing.assert_close(masked_lm_loss(bert, batch), mlm)
    torch.testing.assert_close(next_sentence_loss(bert, batch), nsp)
    torch.testing.assert_close(bert_pretraining_loss(bert, batch), mlm + nsp)

    class ElectraStandIn(nn.Module):
        def forward(self, input_ids, token_type_ids=None, attention_mask=None):
            out = type("Out", (), {})()
            out.loss = (input_ids.float().mean() + (0 if attention_mask is None else attention_mask.float().sum()))
            return out

    torch.testing.assert_close(replaced_token_detection_loss(ElectraStandIn(), {"input_ids": ids}), ids.float().mean())
    with pytest.raises(ValueError, match=r"the batch lacks \['input_ids'\]"):
        replaced_token_detection_loss(ElectraStandIn(), {"ids": ids})
    with pytest.raises(ValueError, match=r"expects a batch \(x, y\), got a tuple of 3"):
        causal_lm_loss(model, (x, y, y))
    with pytest.raises(ValueError, match=r"expects a batch \(src, tgt_in, tgt_out\[, src_mask\]\), got Tensor"):
        seq2seq_lm_loss(s2s, src)
    with pytest.raises(ValueError, match=r"the batch lacks \['is_next'\]"):
        bert_pretraining_loss(bert, {"input_ids": ids, "labels": labels})
    with pytest.raises(ValueError, match="expects a dict batch"):
        masked_lm_loss(bert, (ids, labels))


@pytest.mark.parametrize("objective", ["seq2seq", "mlm+nsp", "rtd"])
def test_trains_every_model_family_and_objective(objective):
    """The encoder–decoder (translation-style loss), BERT (MLM + NSP) and ELECTRA (RTD) learn a toy
    task through the same trainer (GPT's causal LM is covered above and in test_resume)."""
    from llm_tutorial.data.pretraining_examples import mask_tokens
    from llm_tutorial.models.bert import Bert, BertConfig
    from llm_tutorial.models.electra import Electra, ElectraConfig
    from llm_tutorial.models.transformer import Transformer, TransformerConfig
    from llm_tutorial.train.objectives import bert_pretraining_loss, replaced_token_detection_loss, seq2seq_lm_loss

    def reversal(batch_size, generator):  # tokens 1.. reversed; 0 is padding and the start token
        src = torch.randint(1, VOCAB, (batch_size, 6), generator=generator)
        tgt = src.flip(1)
        return src, torch.cat([torch.zeros_like(tgt[:, :1]), tgt[:, :-1]], 1), tgt

    def patterned(batch_size, generator):  # [CLS]=1 then a repeated pair: predictable from context
        pair = torch.randint(3, VOCAB, (batch_size, 2), generator=generator)
        ids = torch.cat([torch.ones(batch_size, 1, dtype=torch.long), pair.repeat(1, 4)], 1)  # (B, 9)
        return ids, (pair[:, 0] > VOCAB // 2).long()

    def masked(batch_size, generator):
        ids, is_next = patterned(batch_size, generator)
        masked_ids, labels = mask_tokens(ids, mask_id=2, vocab_size=VOCAB, special_ids=[0, 1], mask_prob=0.3,
                                         generator=generator)
        return {"input_ids": masked_ids, "labels": labels, "is_next": is_next}

    def plain(batch_size, generator):
        return {"input_ids": patterned(batch_size, generator)[0]}

    torch.manual_seed(0)
    bert = dict(vocab_size=VOCAB, d_model=16, n_head=2, n_layer=1, d_ff=32, max_len=9, dropout=0.0)
    model, loss_fn, batches = {
        "seq2seq": (Transformer(TransformerConfig(VOCAB, VOCAB, d_model=16, n_head=2, n_encoder_layer=1,
                                                  n_decoder_layer=1, d_ff=32, dropout=0.0, max_len=8)),
                    seq2seq_lm_loss, reversal),
        "mlm+nsp": (Bert(BertConfig(**bert)), bert_pretraining_loss, masked),
        "rtd": (Electra(ElectraConfig(BertConfig(**{**bert, "d_model": 8, "d_ff": 16, "embedding_size": 16}),
                                      BertConfig(**bert), mask_id=2, special_ids=(1,))),
                replaced_token_detection_loss, plain),
    }[objective]
    history = Trainer(model, loss_fn, batches, config(batch_size=32, max_steps=80, lr=1e-2, log_interval=10),
                      val_batches=batches).fit()
    assert history.val_loss[-1] < 0.8 * history.val_loss[0], history.val_loss
    assert history.tokens_per_s[-1] > 0
