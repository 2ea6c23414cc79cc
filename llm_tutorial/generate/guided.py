"""Classifier-guided decoding (FUDGE, Yang & Klein, 2021): steer a language model at decoding time.

Control codes (CTRL) need a model *trained* with the codes. FUDGE leaves the language model as it
is and steers it with a small classifier of the wanted attribute ``a``. By Bayes' rule,

    p(x_t | x_<t, a)  ∝  p_LM(x_t | x_<t) · p(a | x_<t, x_t),

where ``p(a | x_≤t)`` is the probability that a text beginning ``x_≤t`` will, once finished, have
the attribute: a *prefix* classifier's output (:class:`~llm_tutorial.models.prefix_classifier.
PrefixClassifier`). Scoring every token of the vocabulary at every step is costly, so FUDGE scores
only the LM's top-k candidates ``K_t`` and gives the rest probability 0. With a strength ``λ``
(λ = 1 is the Bayes rule; λ > 1 trusts the classifier more, λ = 0 is plain top-k sampling):

    z̃_i = z_i + λ · log p(a | x_<t, i)   for i ∈ K_t,     z̃_i = −∞ otherwise,
    p̃(x_t = i) = softmax(z̃)_i,

with ``z`` the LM's logits after temperature. The classifier is recurrent, so each candidate costs
one GRU step from the state of ``x_<t`` (:meth:`~llm_tutorial.models.prefix_classifier.
PrefixClassifier.extend`); the LM runs through its KV cache as in :func:`~.sampling.generate`.

- :func:`guided_logits`   the guided scores z̃ from the LM's logits and the candidates' log p(a | ·)
- :func:`guided_generate` sample a continuation with it, one row per target attribute
"""

from __future__ import annotations

import torch
from torch import nn

from llm_tutorial._checks import check_floating, check_number, check_rank
from llm_tutorial.generate.processors import process_logits
from llm_tutorial.generate.sampling import _last_logits, _prepare


def guided_logits(lm_logits: torch.Tensor, candidates: torch.Tensor, attribute_log_probs: torch.Tensor,
                  strength: float) -> torch.Tensor:
    """The guided scores ``z̃`` ``(B, V)``: ``z_i + λ · log p(a | x_<t, i)`` on the candidates, −∞ elsewhere.

    ``lm_logits`` ``(B, V)``: the LM's next-token logits (after temperature); ``candidates``
    ``(B, k)``: distinct token ids per row (FUDGE: the LM's top k); ``attribute_log_probs``
    ``(B, k)``: ``log p(a | x_<t, candidate)`` from the prefix classifier; ``strength`` λ ≥ 0.
    ``softmax`` of the result is the guided next-token distribution. λ = 0 returns the LM's
    logits on the candidates unchanged (plain top-k sampling).
    """
    check_rank(lm_logits, "lm_logits", 2, "(B, V)")
    check_floating(lm_logits, "lm_logits")
    check_rank(candidates, "candidates", 2, "(B, k)")
    check_rank(attribute_log_probs, "attribute_log_probs", 2, "(B, k): log p(a | x_<t, candidate)")
    check_floating(attribute_log_probs, "attribute_log_probs")
    strength = check_number(strength, "strength", 0, hint=" (λ = 0 is plain sampling, 1 is Bayes' rule)")
    B, V = lm_logits.shape
    if candidates.dtype != torch.long or candidates.size(0) != B:
        raise ValueError(f"candidates must be (B, k) = ({B}, k) long token ids, got {tuple(candidates.shape)} "
                         f"{str(candidates.dtype).removeprefix('torch.')}")
    if attribute_log_probs.shape != candidates.shape:
        raise ValueError(f"attribute_log_probs must match candidates' shape {tuple(candidates.shape)} (one log p(a | ·) "
                         f"per candidate), got {tuple(attribute_log_probs.shape)}")
    if candidates.numel() and (int(candidates.min()) < 0 or int(candidates.max()) >= V):
        raise ValueError(f"candidates must be token ids in [0, {V}), got min {int(candidates.min())}, "
                         f"max {int(candidates.max())}")
    if (attribute_log_probs > 1e-6).any():
        raise ValueError("attribute_log_probs must be log-probabilities (≤ 0); got positive values — pass "
                         "log_softmax of the classifier's logits, not the logits or the probabilities")
    if candidates.size(1) > 1 and (candidates.sort(dim=-1).values.diff(dim=-1) == 0).any():
        raise ValueError("candidates repeat a token within a row; give each candidate once (e.g. torch.topk's indices)")
    scores = lm_logits.gather(-1, candidates)  # (B, k): z_i of the candidates
    if strength:
        scores = scores + strength * attribute_log_probs  # z_i + λ log p(a | x_<t, i)
    guided = torch.full_like(lm_logits, float("-inf"))
    return guided.scatter(-1, candidates, scores)  # (B, V): −∞ outside the candidates


def guided_generate(model: nn.Module, classifier: nn.Module, prompt_ids: torch.Tensor | list[int],
                    max_new_tokens: int, attribute: int | torch.Tensor, *, strength: float = 1.0, top_k: int = 10,
                    temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Continue ``prompt_ids`` (``(T,)`` or ``(B, T)``) by ``max_new_tokens`` tokens, steered towards ``attribute``.

    ``classifier`` provides ``start(ids) → (log p(a | prompt), state)`` and
    ``extend(state, candidates) → (log p(a | prompt, candidate) (B, k, A), states (B, k, H))``
    (a :class:`~llm_tutorial.models.prefix_classifier.PrefixClassifier`). ``attribute``: one
    class id for every row, or one per row ``(B,)``. Each step keeps the LM's ``top_k`` tokens
    (after ``temperature``), re-weights them by ``p(a | ·)^strength`` (:func:`guided_logits`)
    and samples (``temperature=0``: takes the argmax). With ``strength=0`` the tokens are those
    of ``generate(model, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k)``
    under the same ``generator``. Returns prompt and continuation, like :func:`generate`.
    """
    request = _prepare(model, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k, generator=generator)
    strength = check_number(strength, "strength", 0, hint=" (λ = 0 is plain sampling, 1 is Bayes' rule)")
    if not all(callable(getattr(classifier, name, None)) for name in ("start", "extend")):
        raise TypeError(f"classifier must have start(ids) and extend(state, candidates) (a PrefixClassifier), "
                        f"got {type(classifier).__name__}")
    prompt = request.prompt  # (B, T)
    B, start = prompt.shape
    targets = _attribute_rows(attribute, B, prompt.device)  # (B,)
    k = min(top_k, model.config.vocab_size)
    end = start + max_new_tokens
    out = torch.empty(B, end, dtype=torch.long, device=prompt.device)
    out[:, :start] = prompt
    modes = model.training, getattr(classifier, "training", False)
    model.eval()
    if isinstance(classifier, nn.Module):
        classifier.eval()
    try:
        with torch.inference_mode():
            cache = model.new_cache(B, max_len=end)
            logits = _last_logits(model, prompt, cache)  # (B, V): the prefill
            log_p, state = classifier.start(prompt)  # (B, A), (B, H)
            if not 0 <= int(targets.max()) < log_p.size(-1):
                raise ValueError(f"attribute must be a class id in [0, {log_p.size(-1)}) of the classifier, "
                                 f"got {targets.tolist()}")
            rows = torch.arange(B, device=prompt.device)
            for t in range(start, end):
                z = process_logits(logits, temperature=request.temperature or 1.0, top_k=k)  # as generate() does
                candidates = z.topk(k, dim=-1).indices  # (B, k): K_t
                log_p, states = classifier.extend(state, candidates)  # (B, k, A), (B, k, H)
                log_p_a = log_p[rows, :, targets]  # (B, k): log p(a | x_<t, candidate)
                scores = guided_logits(z, candidates, log_p_a, strength)  # (B, V)
                if request.temperature == 0:
                    token = scores.argmax(dim=-1)
                else:
                    token = torch.multinomial(scores.softmax(dim=-1), 1, generator=request.generator).squeeze(-1)
                chosen = (candidates == token[:, None]).int().argmax(dim=-1)  # (B,): which candidate was taken
                state = states[rows, chosen]  # (B, H)
                out[:, t] = token
                if t + 1 < end:
                    logits = _last_logits(model, token[:, None], cache)  # one new token through the cache
    finally:
        model.train(modes[0])
        if isinstance(classifier, nn.Module):
            classifier.train(modes[1])
    return out[0] if request.single else out


def _attribute_rows(attribute: int | torch.Tensor, B: int, device: torch.device) -> torch.Tensor:
    """The target class of each row ``(B,)``."""
    if isinstance(attribute, int) and not isinstance(attribute, bool):
        if attribute < 0:
            raise ValueError(f"attribute must be a class id ≥ 0, got {attribute}")
        return torch.full((B,), attribute, dtype=torch.long, device=device)
    if isinstance(attribute, torch.Tensor) and attribute.dtype == torch.long and attribute.shape == (B,):
        if (attribute < 0).any():
            raise ValueError(f"attribute must hold class ids ≥ 0, got {attribute.tolist()}")
        return attribute.to(device)
    got = f"a tensor of shape {tuple(attribute.shape)} and dtype {attribute.dtype}" if isinstance(attribute, torch.Tensor) \
        else repr(attribute)
    raise ValueError(f"attribute must be one class id (an int) or one per row, a ({B},) long tensor; got {got}")

