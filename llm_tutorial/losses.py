"""The loss of each pre-training objective, label smoothing, and perplexity.

Every objective of chapter 2.3 trains by maximum likelihood, and so by cross-entropy: the model
gives a distribution ``p`` over the vocabulary at each position and pays ``-log p(correct token)``.
The objectives differ only in *which* positions are scored and *what* the correct answer is:

- CLM (GPT): every position, the next token.                          :func:`clm_loss`
- MLM (BERT): only the masked positions, the original token.          :func:`mlm_loss`
- NSP (BERT): one answer per pair of segments, "is B the next one?"   :func:`nsp_loss`
- RTD (ELECTRA): every real token, "was this token replaced?"        :func:`rtd_loss`
- translation (encoder–decoder): the next target token.               :data:`seq2seq_loss`
- distillation: every position, the teacher's whole distribution.     :func:`distillation_loss`

Positions that are not scored carry the label :data:`IGNORE_INDEX` (the same ``-100`` PyTorch and
Hugging Face use), so one tensor of labels says both what to predict and where.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import (
    check_choice,
    check_dtype,
    check_floating,
    check_labels,
    check_min_rank,
    check_positive_number,
    check_probability,
    check_rank,
    check_tensor,
)

IGNORE_INDEX = -100
"""The label of a position that no loss scores (padding, unmasked tokens in MLM)."""

REDUCTIONS = ("mean", "sum", "none")


def _reduce(per_position: torch.Tensor, scored: torch.Tensor, reduction: str) -> torch.Tensor:
    """Mean over the scored positions, their sum, or the per-position values (0 where unscored).

    A batch with no scored position (a short MLM batch may draw no mask) has mean loss 0, not
    0/0 = NaN, so one unlucky batch cannot poison a training run.
    """
    per_position = torch.where(scored, per_position, torch.zeros_like(per_position))
    if reduction == "none":
        return per_position
    total = per_position.sum()
    if reduction == "sum":
        return total
    return total / scored.sum().clamp(min=1)


def cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    ignore_index: int = IGNORE_INDEX,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    check_range: bool = True,
) -> torch.Tensor:
    """Cross-entropy between the model's softmax and (smoothed) one-hot targets.

    ``logits`` is (..., V) and ``targets`` (...) holds class ids, or ``ignore_index`` where no
    loss is wanted. With ``z`` the logits of one position and ``y`` its target:

        log p_c = z_c - log sum_k exp(z_k)                         (log-softmax)
        q       = (1 - eps) * onehot(y) + eps / V                  (label smoothing)
        loss    = -sum_c q_c log p_c
                = (1 - eps) * (-log p_y) + eps * (-(1/V) sum_c log p_c)

    With ``eps = 0`` this is the negative log-likelihood ``-log p_y``. Label smoothing
    (Szegedy et al. 2016; used by "Attention Is All You Need" with eps = 0.1) keeps the model
    from pushing one logit to infinity: the best ``p`` is now ``q``, not a one-hot vector.

    ``reduction="mean"`` averages over the scored positions (as ``F.cross_entropy`` does),
    ``"sum"`` adds them up, ``"none"`` returns the loss of each position (0 where ignored).
    Half-precision logits are promoted to float32 first: ``exp`` of a large logit overflows fp16.

    ``check_range`` (default True) checks that every scored target lies in ``[0, V)``. That check
    reads the targets' minimum and maximum back to the host, which makes a GPU wait; a training
    loop whose targets were checked where the data enters (as ``python -m llm_tutorial train``
    checks the whole corpus once) turns it off, as :mod:`llm_tutorial.train.objectives` does when
    the model's ``check_token_range`` is off. Without the check an out-of-range id fails inside
    the gather on a CPU (reported here, naming the opt-out) and on a GPU with a device-side assert.

    Non-finite logits are not checked either (that too would be a host read per step); their
    loss is defined: a target whose logit is ``-inf`` has probability 0 and loss ``+inf``
    (``-log 0``); a position with a ``+inf`` logit has an undefined softmax (∞/∞) and loss
    ``+inf``; a NaN logit gives NaN. Either way the trainer stops at its next log point, naming
    the step (:class:`~llm_tutorial.train.NonFiniteLossError`).
    """
    check_min_rank(logits, "logits", 1, "(..., V)")
    check_floating(logits, "logits")
    check_tensor(targets, "targets")
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"targets must have the shape of logits without its last (vocabulary) dimension, "
            f"{tuple(logits.shape[:-1])}; got {tuple(targets.shape)}"
        )
    eps = check_probability(label_smoothing, "label_smoothing")
    check_choice(reduction, "reduction", REDUCTIONS)
    vocab_size = logits.shape[-1]
    if check_range:
        check_labels(targets, "targets", vocab_size, ignore_index)
    elif targets.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"targets must hold integer class ids (torch.long), got {str(targets.dtype).replace('torch.', '')}")

    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    log_z = torch.logsumexp(logits, dim=-1, keepdim=True)  # (..., 1)
    log_probs = logits - log_z  # (..., V)
    scored = targets != ignore_index  # (...)
    safe_targets = torch.where(scored, targets, torch.zeros_like(targets)).long()  # ignored → any valid id
    try:
        nll = -log_probs.gather(-1, safe_targets.unsqueeze(-1)).squeeze(-1)  # (...)  -log p_y
    except (RuntimeError, IndexError) as error:  # only reachable with check_range=False
        raise ValueError(f"targets hold an id outside [0, {vocab_size}) (the range check was off: check_range=False, "
                         "or the model's check_token_range=False); turn it on to see which") from error
    per_position = nll
    if eps > 0:  # (1 - eps) * nll + 0 * uniform_ce would turn an infinite nll into NaN when eps = 0
        uniform_ce = -log_probs.mean(dim=-1)  # (...)  -(1/V) sum_c log p_c
        per_position = (1.0 - eps) * nll + eps * uniform_ce
    per_position = torch.where(log_z.squeeze(-1) == float("inf"), float("inf"), per_position)  # a +inf logit
    return _reduce(per_position, scored, reduction)


def clm_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    ignore_index: int = IGNORE_INDEX,
    label_smoothing: float = 0.0,
    check_range: bool = True,
) -> torch.Tensor:
    """Causal language modelling: predict every next token.

    ``logits`` (B, T, V) are the model's outputs on ``inputs = x[:, :-1]`` and ``targets``
    (B, T) are ``x[:, 1:]`` (see ``llm_tutorial.data.pretraining_examples.causal_lm_example``):

        L = -(1 / N) sum_{b, t} log p(x_{b, t+1} | x_{b, <=t})

    averaged over the N target tokens that are not ``ignore_index`` (padding). ``check_range``:
    see :func:`cross_entropy`.
    """
    check_rank(logits, "logits", 3, "(B, T, V)")
    check_rank(targets, "targets", 2, "(B, T)")
    return cross_entropy(logits, targets, ignore_index=ignore_index, label_smoothing=label_smoothing,
                         check_range=check_range)


seq2seq_loss = clm_loss
"""The decoder of an encoder–decoder is a causal LM conditioned on the source sentence, so its loss
is :func:`clm_loss` on (target logits, shifted target ids): ``-(1/N) sum_t log p(y_{t+1} | y_<=t, x)``.
Pass ``label_smoothing=0.1`` for the setting of "Attention Is All You Need", and set padded target
positions to ``IGNORE_INDEX`` (or pass ``ignore_index=pad_id``)."""


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor, *, label_smoothing: float = 0.0) -> torch.Tensor:
    """Masked language modelling: recover the original token at the masked positions only.

    ``logits`` (B, T, V); ``labels`` (B, T) hold the original id where a position was selected
    for masking and ``IGNORE_INDEX`` elsewhere (``llm_tutorial.data.pretraining_examples.mask_tokens``):

        L = -(1 / |M|) sum_{(b, t) in M} log p(x_{b, t} | x_masked)

    where M is the set of selected positions. The other 85% of tokens give no loss, which is
    why MLM learns from fewer predictions per sequence than CLM (ELECTRA's motivation).
    """
    check_rank(logits, "logits", 3, "(B, T, V)")
    check_rank(labels, "labels", 2, "(B, T)")
    return cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)


def plm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Permutation language modelling (XLNet): the chain rule in a random order z, scored on the
    P predicted positions (the last T/K of the order):

        L = -(1 / (B P)) sum_b sum_{t > c} log p(x_{z_t} | x_{z_<t})

    ``logits`` (B, P, V) are :class:`~llm_tutorial.models.permutation_lm.PermutationLM`'s outputs at
    the target positions and ``labels`` (B, P) the tokens there
    (``llm_tutorial.data.pretraining_examples.permutation_lm_example``).
    """
    check_rank(logits, "logits", 3, "(B, P, V)")
    check_rank(labels, "labels", 2, "(B, P)")
    return cross_entropy(logits, labels)


def nsp_loss(logits: torch.Tensor, is_next: torch.Tensor) -> torch.Tensor:
    """Next-sentence prediction: a two-way classification of each pair of segments.

    ``logits`` (B, 2) come from the pooled [CLS] vector; ``is_next`` (B,) is 1 when segment B
    really follows segment A and 0 when it is a random segment:

        L = -(1 / B) sum_b log softmax(logits_b)[is_next_b]
    """
    check_rank(logits, "logits", 2, "(B, 2)")
    if logits.shape[-1] != 2:
        raise ValueError(
            f"NSP logits must have 2 classes (not next, next) in the last dimension, got shape {tuple(logits.shape)}"
        )
    check_rank(is_next, "is_next", 1, "(B,)")
    return cross_entropy(logits, is_next.long() if is_next.dtype == torch.bool else is_next)


def rtd_loss(
    disc_logits: torch.Tensor,
    is_replaced: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Replaced-token detection (ELECTRA): a binary "was this token replaced?" at every real token.

    ``disc_logits`` (B, T) are the discriminator's scores ``z``; ``is_replaced`` (B, T) the 0/1
    labels ``y``; ``attention_mask`` (B, T, bool) marks the real tokens (``True``) and excludes
    padding. With ``sigma`` the logistic sigmoid, the binary cross-entropy is

        l(z, y) = -[ y log sigma(z) + (1 - y) log(1 - sigma(z)) ]
                = -[ y log sigma(z) + (1 - y) log sigma(-z) ]          (1 - sigma(z) = sigma(-z))

    averaged over the real tokens. ``log sigma`` is computed directly (``F.logsigmoid``), never
    as ``log`` of a sigmoid that may have rounded to 0 or 1.
    """
    check_rank(disc_logits, "disc_logits", 2, "(B, T)")
    check_floating(disc_logits, "disc_logits")
    check_tensor(is_replaced, "is_replaced")
    if is_replaced.shape != disc_logits.shape:
        raise ValueError(
            f"is_replaced must have the shape of disc_logits {tuple(disc_logits.shape)}, got {tuple(is_replaced.shape)}"
        )
    if is_replaced.numel() and not bool(((is_replaced == 0) | (is_replaced == 1)).all()):
        raise ValueError("is_replaced must hold only 0 (original token) and 1 (replaced token)")
    if attention_mask is None:
        attention_mask = torch.ones_like(disc_logits, dtype=torch.bool)
    check_tensor(attention_mask, "attention_mask")
    if attention_mask.shape != disc_logits.shape:
        raise ValueError(
            f"attention_mask must have the shape of disc_logits {tuple(disc_logits.shape)}, "
            f"got {tuple(attention_mask.shape)}"
        )
    check_dtype(attention_mask, "attention_mask", torch.bool)

    z = disc_logits.to(torch.promote_types(disc_logits.dtype, torch.float32))
    y = is_replaced.to(z.dtype)
    per_token = -(y * F.logsigmoid(z) + (1.0 - y) * F.logsigmoid(-z))  # (B, T)
    return _reduce(per_token, attention_mask, "mean")


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    temperature: float = 2.0,
    alpha: float = 0.5,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Knowledge distillation (Hinton et al., 2015): a student learns the teacher's soft targets.

    Both logits are (..., V). Softened by a temperature τ, the teacher's distribution
    ``p^τ = softmax(z_teacher / τ)`` shows which wrong answers it finds plausible — information a
    one-hot label does not carry. The student ``q^τ = softmax(z_student / τ)`` pays

        L_soft = τ² · KL(p^τ ‖ q^τ) = τ² · Σ_c p^τ_c (log p^τ_c − log q^τ_c)

    averaged over positions; the factor τ² keeps the gradient's size independent of τ (the
    gradient of the KL term shrinks as 1/τ²). With ``targets`` (...) the hard-label loss joins in:

        L = α · L_soft + (1 − α) · CE(z_student, targets)

    where positions whose target is ``ignore_index`` count in neither term. Without ``targets``
    only ``L_soft`` is returned (``alpha`` must then be 1). No gradient flows into the teacher.
    """
    check_min_rank(student_logits, "student_logits", 2, "(..., V)")
    check_floating(student_logits, "student_logits")
    check_tensor(teacher_logits, "teacher_logits")
    check_floating(teacher_logits, "teacher_logits")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher_logits must have the shape of student_logits {tuple(student_logits.shape)}, "
                         f"got {tuple(teacher_logits.shape)}")
    check_positive_number(temperature, "temperature")
    check_probability(alpha, "alpha")
    if targets is None and alpha != 1:
        raise ValueError(f"without targets the loss is the soft term alone: pass alpha=1 (got alpha={alpha!r}) "
                         "or give the hard targets")
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    log_q = F.log_softmax(student_logits.to(dtype) / temperature, dim=-1)  # (..., V)
    log_p = F.log_softmax(teacher_logits.detach().to(dtype) / temperature, dim=-1)  # (..., V)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1)  # (...)
    if targets is None:
        return temperature**2 * kl.mean()
    check_tensor(targets, "targets")
    if targets.shape != student_logits.shape[:-1]:
        raise ValueError(f"targets must have shape {tuple(student_logits.shape[:-1])} (the logits without V), "
                         f"got {tuple(targets.shape)}")
    scored = targets != ignore_index
    soft = _reduce(temperature**2 * kl, scored, "mean")
    hard = cross_entropy(student_logits, targets, ignore_index=ignore_index)
    return alpha * soft + (1 - alpha) * hard


def perplexity(mean_nll: float | torch.Tensor) -> float | torch.Tensor:
    """Perplexity ``exp(mean negative log-likelihood per token)``.

    The effective number of equally likely choices the model hesitates between: a model that
    spreads its probability uniformly over V tokens has mean NLL ``log V`` and perplexity V.
    Give it the mean NLL in nats (as :func:`cross_entropy` returns it, without label smoothing).
    Beyond ``exp(709.78)`` a float overflows: the perplexity is then ``inf`` (as ``torch.exp``
    gives), not an ``OverflowError``; a NaN is refused.
    """
    if isinstance(mean_nll, torch.Tensor):
        check_floating(mean_nll, "mean_nll")
        if mean_nll.numel() and bool(((mean_nll < 0) | mean_nll.isnan()).any()):
            raise ValueError(
                "mean_nll is a negative log-likelihood and cannot be negative or NaN, got "
                f"min {float(mean_nll.min())}"
            )
        return torch.exp(mean_nll)
    if not isinstance(mean_nll, (int, float)) or isinstance(mean_nll, bool):
        raise TypeError(f"mean_nll must be a float or a torch.Tensor, got {type(mean_nll).__name__}")
    if mean_nll < 0 or math.isnan(mean_nll):
        raise ValueError(f"mean_nll is a negative log-likelihood and must be >= 0, got {mean_nll!r}")
    try:
        return math.exp(mean_nll)
    except OverflowError:
        return math.inf
