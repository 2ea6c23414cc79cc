"""kNN-LM: a language model that also looks up what came next in similar contexts of its training text.

Khandelwal et al. (2020, "Generalization through Memorization: Nearest Neighbor Language Models")
keep a trained LM as it is and add a **datastore** of every context of the training text:

    key   k_i = f(c_i)            the LM's hidden state after context c_i        (N, d_model)
    value v_i = w_i               the token that followed c_i in the text        (N,)

At a held-out context x with query q = f(x), the K nearest keys by squared Euclidean distance
d(q, k) = ‖q − k‖² vote for their values, each with weight exp(−d/τ):

    p_kNN(y | x) = Σ_{i ∈ K-NN(q), v_i = y} exp(−d(q, k_i)/τ) / Σ_{i ∈ K-NN(q)} exp(−d(q, k_i)/τ)
    p(y | x)     = λ · p_kNN(y | x) + (1 − λ) · p_LM(y | x)

No parameter is trained: λ, τ and K are chosen on validation text. λ = 0 is the LM itself.

Which hidden state is the key? The paper compared several of its 16-layer model's and used the
input to the last layer's feed-forward network, after its layer norm. Here ``f`` is the final
hidden state, the vector ``lm_head`` reads (:meth:`GPT.hidden_states`): it is the representation
the LM's own softmax was trained to make linearly predictive of the next token, so contexts
close in it tend to share their next token, and it needs no hook inside a block.

Search here is **exact**: every query is compared with every key, in blocks of queries and keys
(one ``(query block, key block)`` distance matrix at a time, a running top-K kept), so memory
stays bounded and the result does not depend on the block sizes. The paper searched 103 million
keys with FAISS's approximate, quantised index; at a million keys exact search still fits a laptop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._checks import check_dtype, check_floating, check_int, check_positive_number, check_rank, check_tensor

__all__ = ["Datastore", "build_datastore", "encode_stream", "interpolate", "knn_distribution", "knn_lm_losses",
           "knn_search"]


@dataclass
class Datastore:
    """Keys ``(N, d_model)`` (hidden states) and values ``(N,)`` (the next token after each)."""

    keys: torch.Tensor
    values: torch.Tensor

    def __post_init__(self) -> None:
        check_rank(check_tensor(self.keys, "keys"), "keys", 2, "(N, d_model) hidden states")
        check_floating(self.keys, "keys")
        check_rank(check_tensor(self.values, "values"), "values", 1, "(N,) next-token ids")
        check_dtype(self.values, "values", (torch.int64, torch.int32))
        if len(self.keys) != len(self.values):
            raise ValueError(f"a datastore needs one value per key, got {len(self.keys)} keys and {len(self.values)} values")

    def __len__(self) -> int:
        return len(self.values)

    @property
    def nbytes(self) -> int:
        """Memory of keys and values, in bytes."""
        return self.keys.numel() * self.keys.element_size() + self.values.numel() * self.values.element_size()

    def prefix(self, n: int) -> Datastore:
        """The first ``n`` entries: the datastore of a prefix of the text (for size sweeps)."""
        n = check_int(n, "n", low=1, high=len(self))
        return Datastore(self.keys[:n], self.values[:n])


@torch.no_grad()
def encode_stream(model: torch.nn.Module, ids: torch.Tensor, context: int,
                  batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Read the stream ``ids`` ``(N + 1,)`` in non-overlapping windows of ``context`` tokens.

    Returns, for each of the N predicted tokens ``ids[1:]``: the final hidden state
    ``(N, d_model)``, the LM's log-probabilities ``(N, V)`` and the target ids ``(N,)``. The model
    must have ``hidden_states`` and ``lm_head`` (the package's :class:`GPT`).
    """
    ids = check_tensor(ids, "ids")
    check_rank(ids, "ids", 1, "(N + 1,): one stream of token ids")
    check_dtype(ids, "ids", (torch.int64, torch.int32))
    if len(ids) < 2:
        raise ValueError(f"ids must hold at least 2 tokens (one context and one target), got {len(ids)}")
    context = check_int(context, "context", low=1)
    batch_size = check_int(batch_size, "batch_size", low=1)
    if not (hasattr(model, "hidden_states") and hasattr(model, "lm_head")):
        raise TypeError(f"model must have hidden_states() and lm_head (a GPT), got {type(model).__name__}")
    device = next(model.parameters()).device
    n = len(ids) - 1
    full = n // context
    pieces = []  # (x, y) window batches: full windows, then the shorter last one
    x_all, y_all = ids[: full * context].view(full, context), ids[1 : full * context + 1].view(full, context)
    pieces += [(x_all[i : i + batch_size], y_all[i : i + batch_size]) for i in range(0, full, batch_size)]
    if n > full * context:
        pieces.append((ids[full * context : n][None], ids[full * context + 1 :][None]))
    was_training = model.training
    model.eval()
    try:
        hidden, log_probs, targets = [], [], []
        for x, y in pieces:
            h = model.hidden_states(x.long().to(device))  # (b, t, d_model)
            hidden.append(h.float().cpu().flatten(0, 1))
            log_probs.append(F.log_softmax(model.lm_head(h).float(), dim=-1).cpu().flatten(0, 1))  # (b·t, V)
            targets.append(y.long().flatten())
    finally:
        model.train(was_training)
    return torch.cat(hidden), torch.cat(log_probs), torch.cat(targets)


def build_datastore(model: torch.nn.Module, ids: torch.Tensor, context: int, batch_size: int = 64) -> Datastore:
    """The datastore of the stream ``ids``: one (hidden state, next token) pair per predicted token,
    read in non-overlapping windows of ``context`` tokens (as held-out text is scored)."""
    hidden, _, targets = encode_stream(model, ids, context, batch_size)
    return Datastore(hidden, targets)


@torch.no_grad()
def knn_search(queries: torch.Tensor, keys: torch.Tensor, k: int, *, query_chunk: int = 1024,
               key_chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact K-nearest-neighbour search by squared Euclidean distance.

    ``queries`` ``(Q, d)``, ``keys`` ``(N, d)`` -> (distances ``(Q, k)`` ascending, indices ``(Q, k)``).
    Distances are expanded as ‖q‖² − 2 q·k + ‖k‖² (one matmul per block) and clamped at 0.
    """
    for name, x in (("queries", queries), ("keys", keys)):
        check_rank(check_tensor(x, name), name, 2, f"({'Q' if name == 'queries' else 'N'}, d)")
        check_floating(x, name)
    if queries.size(1) != keys.size(1):
        raise ValueError(f"queries and keys must have the same width d, got {queries.size(1)} and {keys.size(1)}")
    k = check_int(k, "k", low=1, high=len(keys), hint=f"k is the number of neighbours; the datastore has {len(keys)} keys")
    query_chunk, key_chunk = check_int(query_chunk, "query_chunk", low=1), check_int(key_chunk, "key_chunk", low=1)
    all_distances, all_indices = [], []
    for qs in range(0, len(queries), query_chunk):
        q = queries[qs : qs + query_chunk].float()  # (q, d)
        q_norm = (q * q).sum(1, keepdim=True)  # (q, 1)
        best_d = q.new_full((len(q), 0), float("inf"))
        best_i = torch.empty((len(q), 0), dtype=torch.long)
        for ks in range(0, len(keys), key_chunk):
            block = keys[ks : ks + key_chunk].float()  # (n, d)
            d = (q_norm - 2 * q @ block.T + (block * block).sum(1)).clamp_min_(0)  # (q, n)
            d_top, i_top = d.topk(min(k, d.size(1)), dim=1, largest=False)
            best_d, order = torch.cat([best_d, d_top], 1).topk(min(k, best_d.size(1) + d_top.size(1)), dim=1,
                                                                largest=False)
            best_i = torch.cat([best_i, i_top + ks], 1).gather(1, order)
        all_distances.append(best_d)
        all_indices.append(best_i)
    return torch.cat(all_distances), torch.cat(all_indices)


def knn_distribution(distances: torch.Tensor, values: torch.Tensor, vocab_size: int,
                     temperature: float = 1.0) -> torch.Tensor:
    """p_kNN ``(Q, V)`` from the neighbours' distances ``(Q, K)`` and values ``(Q, K)``:
    softmax(−d/τ) over the K neighbours, each weight added to its value's token."""
    check_rank(check_tensor(distances, "distances"), "distances", 2, "(Q, K)")
    check_floating(distances, "distances")
    check_rank(check_tensor(values, "values"), "values", 2, "(Q, K) token ids of the neighbours")
    check_dtype(values, "values", (torch.int64, torch.int32))
    if distances.shape != values.shape:
        raise ValueError(f"distances and values must have the same shape (Q, K), got {tuple(distances.shape)} "
                         f"and {tuple(values.shape)}")
    vocab_size = check_int(vocab_size, "vocab_size", low=1)
    temperature = check_positive_number(temperature, "temperature")
    if values.numel() and (values.min() < 0 or values.max() >= vocab_size):
        raise ValueError(f"values must be token ids in [0, {vocab_size}), got ids from {int(values.min())} "
                         f"to {int(values.max())}")
    weights = torch.softmax(-distances.float() / temperature, dim=1)  # (Q, K)
    return weights.new_zeros(len(weights), vocab_size).scatter_add_(1, values.long(), weights)  # (Q, V)


def interpolate(lm_log_probs: torch.Tensor, knn_probs: torch.Tensor, lam: float) -> torch.Tensor:
    """log(λ p_kNN + (1 − λ) p_LM) ``(Q, V)``, computed as a log-sum-exp (exact at λ = 0 and 1)."""
    check_floating(check_tensor(lm_log_probs, "lm_log_probs"), "lm_log_probs")
    if lm_log_probs.shape != knn_probs.shape:
        raise ValueError(f"lm_log_probs and knn_probs must have the same shape (Q, V), got "
                         f"{tuple(lm_log_probs.shape)} and {tuple(knn_probs.shape)}")
    lam = float(lam)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam is the weight of the kNN distribution, a number in [0, 1]; got {lam}")
    if lam == 0.0:
        return lm_log_probs
    if lam == 1.0:
        return knn_probs.log()
    return torch.logaddexp(knn_probs.log() + torch.tensor(lam).log(), lm_log_probs + torch.tensor(1 - lam).log())


def knn_lm_losses(model: torch.nn.Module, datastore: Datastore, ids: torch.Tensor, context: int, *, k: int = 64,
                  temperature: float = 1.0, lam: float = 0.25) -> torch.Tensor:
    """Negative log-likelihood (nats) of each token ``ids[1:]`` under the kNN-LM: ``(len(ids) − 1,)``.

    ``ids`` is held-out text, read like the datastore's (non-overlapping windows of ``context``);
    it must not be in the datastore, or the model is scored on text it can look up.
    """
    if not isinstance(datastore, Datastore):
        raise TypeError(f"datastore must be a Datastore (from build_datastore), got {type(datastore).__name__}")
    queries, lm_log_probs, targets = encode_stream(model, ids, context)
    distances, index = knn_search(queries, datastore.keys, k)
    p_knn = knn_distribution(distances, datastore.values[index], lm_log_probs.size(1), temperature)
    log_p = interpolate(lm_log_probs, p_knn, lam)
    return -log_p.gather(1, targets[:, None])[:, 0]
