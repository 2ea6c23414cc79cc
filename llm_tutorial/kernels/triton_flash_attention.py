r"""FlashAttention-2 in Triton: exact attention without ever storing the T×T attention matrix.

Attention for one batch element and head, with queries :math:`Q \in \mathbb{R}^{T_q\times d}`,
keys and values :math:`K, V \in \mathbb{R}^{T_k\times d}` and scale :math:`c` (usually
:math:`1/\sqrt d`):

.. math::

    S = c\, Q K^\top,\qquad P = \operatorname{softmax}_{\text{rows}}(S),\qquad O = P V.

The naive version writes :math:`S` and :math:`P` — :math:`T_q T_k` numbers each — to memory and
reads them back. FlashAttention never forms them in memory.

**Forward: one program = one block of ``BLOCK_M`` query rows of one (batch, head).** It keeps its
queries, an output accumulator and two numbers per row in registers, and walks over the keys in
blocks of ``BLOCK_N``. The softmax of a row needs the maximum and the sum over *all* keys, which
the program has not seen yet, so it keeps running values and corrects them as it goes (the
*online softmax*). For each key block with scores :math:`S_j`:

.. math::

    m_{\text{new}} &= \max\big(m,\ \operatorname{rowmax}(S_j)\big) \\
    \tilde P_j &= e^{S_j - m_{\text{new}}} \\
    \ell &\leftarrow e^{m - m_{\text{new}}}\,\ell + \operatorname{rowsum}(\tilde P_j) \\
    O &\leftarrow e^{m - m_{\text{new}}}\,O + \tilde P_j V_j, \qquad m \leftarrow m_{\text{new}}

The factor :math:`e^{m - m_{\text{new}}} \le 1` rescales everything summed so far to the new
maximum. After the last block :math:`O/\ell` is exactly :math:`PV`, and the program also saves the
log-sum-exp of each row, :math:`L = m + \log \ell`, one number per query.

**Exponentials in base 2.** :math:`e^x = 2^{x \log_2 e}`, and GPUs compute :math:`2^x` natively.
We fold :math:`\log_2 e` into the score scale once (``qk_scale = c·log2(e)``), so scores are in
base-2 units and the kernel calls ``exp2``; the saved log-sum-exp is the base-2 one,
:math:`L_2 = L \log_2 e`.

**Backward: recompute P instead of storing it.** With :math:`dO = \partial\mathcal L/\partial O`,

.. math::

    dV = P^\top dO,\qquad dP = dO\, V^\top,\qquad
    dS = P \odot (dP - \Delta),\quad \Delta = \operatorname{rowsum}(dO \odot O),\qquad
    dQ = c\, dS\, K,\qquad dK = c\, dS^\top Q.

(:math:`\Delta_i = \sum_j P_{ij} dP_{ij}` is the softmax-backward term; it equals
:math:`\operatorname{rowsum}(dO\odot O)` because :math:`O = PV`, and is computed once by a small
preprocessing kernel.) Storing :math:`P` would cost :math:`T_q T_k` numbers per head — the very
memory FlashAttention avoids — while recomputing any tile of it from :math:`Q`, :math:`K` and the
saved :math:`L_2` is one small matrix product and one ``exp2``: :math:`P = 2^{S_2 - L_2}`.
Arithmetic is cheap on a GPU; memory traffic is not.

Two backward kernels, so that no two programs ever add into the same memory (no atomics):

- ``dK, dV``: one program per block of ``BLOCK_N`` keys; it loops over the query blocks that see
  those keys and sums :math:`P^\top dO` and :math:`dS^\top Q` over them.
- ``dQ``: one program per block of ``BLOCK_M`` queries; it loops over the key blocks and sums
  :math:`dS\,K`.

**Masks.** Key blocks that every query of the block may see (all of them without causality;
those left of the diagonal with it) run without any mask. Only the blocks that touch the diagonal
or the end of the sequence run a second, masked loop: masked scores become :math:`-\infty`, so
:math:`e^{-\infty} = 0`. This is how any sequence length works with power-of-two tiles.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from llm_tutorial.kernels.triton_setup import accumulator_dtype, autotune_configs, dot_precision


def _configs(pairs: list[tuple[int, int, int, int]], interpreter: tuple[int, int]) -> list[triton.Config]:
    """Autotune candidates ``(BLOCK_M, BLOCK_N, num_warps, num_stages)``, or the interpreter's one tile."""
    gpu = [
        triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=warps, num_stages=stages)
        for m, n, warps, stages in pairs
    ]
    return autotune_configs(gpu, triton.Config({"BLOCK_M": interpreter[0], "BLOCK_N": interpreter[1]}))


# Hopper-sized candidates (H100/H200, head dims 64 and 128): large query tiles shared by 4-8 warps,
# key tiles that keep two or three stages of K and V in shared memory.
_FORWARD_CONFIGS = _configs(
    [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (128, 32, 4, 4), (64, 64, 4, 4), (64, 32, 4, 3)],
    interpreter=(32, 16),
)
# dK/dV programs own a key block and step through query blocks; dQ programs the other way round.
_DKDV_CONFIGS = _configs(
    [(32, 128, 8, 3), (64, 128, 8, 3), (32, 64, 4, 3), (64, 64, 4, 3), (16, 64, 4, 4)],
    interpreter=(16, 32),
)
_DQ_CONFIGS = _configs(
    [(128, 32, 8, 3), (128, 64, 8, 3), (64, 64, 4, 3), (64, 32, 4, 3), (64, 16, 4, 4)],
    interpreter=(32, 16),
)
# Tune once per power-of-two length, not per length: a decoding loop grows k_len by one every step.
_AUTOTUNE_KEY = ["q_len_bucket", "k_len_bucket", "HEAD_DIM", "CAUSAL", "ACC"]
_DELTA_BLOCK_M = 64


@triton.jit
def _forward_over_keys(
    acc, row_max, row_sum, q, k_base, v_base, stride_kt, stride_kd, stride_vt, stride_vd,
    offs_m, k_len, qk_scale, key_start, key_end,
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, MASKED: tl.constexpr,
    ACC: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """The online-softmax loop over key blocks ``[key_start, key_end)`` for one block of queries."""
    offs_d = tl.arange(0, HEAD_DIM)
    for start_n in range(key_start, key_end, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)  # (BLOCK_N,) the keys of this step
        key_ok = offs_n < k_len
        k = tl.load(k_base + offs_n[:, None] * stride_kt + offs_d[None, :] * stride_kd,
                    mask=key_ok[:, None], other=0.0)  # (BLOCK_N, D)
        v = tl.load(v_base + offs_n[:, None] * stride_vt + offs_d[None, :] * stride_vd,
                    mask=key_ok[:, None], other=0.0)  # (BLOCK_N, D)
        # S₂ = c·log₂(e)·q kᵀ: scores in base-2 units, so that e^S = 2^{S₂}.
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION, out_dtype=ACC) * qk_scale  # (BLOCK_M, BLOCK_N)
        if MASKED:
            visible = key_ok[None, :]
            if CAUSAL:
                visible = visible & (offs_m[:, None] >= offs_n[None, :])  # query i sees keys j ≤ i
            s = tl.where(visible, s, float("-inf"))
        new_max = tl.maximum(row_max, tl.max(s, axis=1))  # m_new = max(m, rowmax(S))
        p = tl.exp2(s - new_max[:, None])  # P̃ = e^{S − m_new}, (BLOCK_M, BLOCK_N)
        correction = tl.exp2(row_max - new_max)  # e^{m − m_new} ≤ 1 (0 on the first block: m = −∞)
        row_sum = row_sum * correction + tl.sum(p, axis=1)  # ℓ ← e^{m−m_new} ℓ + rowsum(P̃)
        acc = tl.dot(p.to(v.dtype), v, acc * correction[:, None],  # O ← e^{m−m_new} O + P̃ V
                     input_precision=DOT_PRECISION, out_dtype=ACC)
        row_max = new_max
    return acc, row_max, row_sum


@triton.autotune(configs=_FORWARD_CONFIGS, key=_AUTOTUNE_KEY)
@triton.jit
def _flash_attention_forward_kernel(
    Q, K, V, O, LSE2, qk_scale,
    stride_qb, stride_qh, stride_qt, stride_qd,
    stride_kb, stride_kh, stride_kt, stride_kd,
    stride_vb, stride_vh, stride_vt, stride_vd,
    stride_ob, stride_oh, stride_ot, stride_od,
    n_heads, q_len, k_len, q_len_bucket, k_len_bucket,  # the buckets only key the autotuner
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, ACC: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # Program (i, bh) owns query rows [i·BLOCK_M, (i+1)·BLOCK_M) of batch element b and head h.
    start_m = tl.program_id(0) * BLOCK_M
    batch_head = tl.program_id(1)
    batch = (batch_head // n_heads).to(tl.int64)
    head = (batch_head % n_heads).to(tl.int64)
    q_base = Q + batch * stride_qb + head * stride_qh
    k_base = K + batch * stride_kb + head * stride_kh
    v_base = V + batch * stride_vb + head * stride_vh
    o_base = O + batch * stride_ob + head * stride_oh

    offs_m = start_m + tl.arange(0, BLOCK_M)  # (BLOCK_M,)
    offs_d = tl.arange(0, HEAD_DIM)  # (D,)
    query_ok = offs_m < q_len
    # The query block is loaded once and stays in registers for the whole loop over keys.
    q = tl.load(q_base + offs_m[:, None] * stride_qt + offs_d[None, :] * stride_qd,
                mask=query_ok[:, None], other=0.0)  # (BLOCK_M, D)

    row_max = tl.full([BLOCK_M], float("-inf"), dtype=ACC)  # m: running max of each row's scores
    row_sum = tl.zeros([BLOCK_M], dtype=ACC)  # ℓ: running Σ e^{S − m}
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=ACC)  # running Σ e^{S − m} V, not yet divided by ℓ

    # Which key blocks need no mask: without causality, all complete blocks; with it, the blocks
    # whose keys are ≤ this block's first query (so every query of the block sees all of them).
    if CAUSAL:
        unmasked_end = ((start_m + 1) // BLOCK_N) * BLOCK_N
        masked_end = tl.minimum(start_m + BLOCK_M, k_len)  # keys past the block's last query are never seen
    else:
        unmasked_end = (k_len // BLOCK_N) * BLOCK_N
        masked_end = k_len
    acc, row_max, row_sum = _forward_over_keys(
        acc, row_max, row_sum, q, k_base, v_base, stride_kt, stride_kd, stride_vt, stride_vd,
        offs_m, k_len, qk_scale, 0, unmasked_end, HEAD_DIM, BLOCK_N, CAUSAL, False, ACC, DOT_PRECISION)
    acc, row_max, row_sum = _forward_over_keys(
        acc, row_max, row_sum, q, k_base, v_base, stride_kt, stride_kd, stride_vt, stride_vd,
        offs_m, k_len, qk_scale, unmasked_end, masked_end, HEAD_DIM, BLOCK_N, CAUSAL, True, ACC, DOT_PRECISION)

    out = acc / row_sum[:, None]  # O = (Σ e^{S−m} V) / ℓ
    tl.store(o_base + offs_m[:, None] * stride_ot + offs_d[None, :] * stride_od, out, mask=query_ok[:, None])
    # L₂ = m + log₂ ℓ: all the backward needs to rebuild P = 2^{S₂ − L₂}.
    tl.store(LSE2 + batch_head * q_len + offs_m, row_max + tl.log2(row_sum), mask=query_ok)


@triton.jit
def _backward_delta_kernel(
    O, DO, Delta, stride_dob, stride_doh, stride_dot, stride_dod, n_heads, q_len,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, ACC: tl.constexpr,
):
    # Δ = rowsum(dO ⊙ O) for BLOCK_M query rows of one (batch, head). O is ours, contiguous.
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    batch_head = tl.program_id(1)
    batch = (batch_head // n_heads).to(tl.int64)
    head = (batch_head % n_heads).to(tl.int64)
    offs_d = tl.arange(0, HEAD_DIM)
    query_ok = offs_m < q_len
    o = tl.load(O + batch_head.to(tl.int64) * q_len * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :],
                mask=query_ok[:, None], other=0.0).to(ACC)
    do_base = DO + batch * stride_dob + head * stride_doh
    do = tl.load(do_base + offs_m[:, None] * stride_dot + offs_d[None, :] * stride_dod,
                 mask=query_ok[:, None], other=0.0).to(ACC)
    tl.store(Delta + batch_head * q_len + offs_m, tl.sum(do * o, axis=1), mask=query_ok)


@triton.jit
def _head_pointers(
    Q, K, V, DO, stride_qb, stride_qh, stride_kb, stride_kh, stride_vb, stride_vh, stride_dob, stride_doh, n_heads,
):
    """Both backward kernels: this program's (batch, head) index ``bh`` = program_id(1), and where its
    rows of Q, K, V and dO begin (offsets in int64, so large tensors do not overflow)."""
    batch_head = tl.program_id(1).to(tl.int64)
    batch = batch_head // n_heads
    head = batch_head % n_heads
    return (batch_head, Q + batch * stride_qb + head * stride_qh, K + batch * stride_kb + head * stride_kh,
            V + batch * stride_vb + head * stride_vh, DO + batch * stride_dob + head * stride_doh)


@triton.jit
def _dk_dv_over_queries(
    dk, dv, k, v, q_base, do_base, lse2_base, delta_base,
    stride_qt, stride_qd, stride_dot, stride_dod,
    offs_n, q_len, qk_scale, query_start, query_end,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, MASKED: tl.constexpr,
    ACC: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Add the contributions of query blocks ``[query_start, query_end)`` to one key block's dK, dV."""
    offs_d = tl.arange(0, HEAD_DIM)
    for start_m in range(query_start, query_end, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)  # (BLOCK_M,)
        query_ok = offs_m < q_len
        # Rows past the end load as zeros (q = dO = L₂ = Δ = 0): their recomputed P is 2⁰ = 1 but it
        # only ever multiplies dO = 0 or (dP − Δ) = 0, so they add nothing and need no mask.
        q = tl.load(q_base + offs_m[:, None] * stride_qt + offs_d[None, :] * stride_qd,
                    mask=query_ok[:, None], other=0.0)  # (BLOCK_M, D)
        do = tl.load(do_base + offs_m[:, None] * stride_dot + offs_d[None, :] * stride_dod,
                     mask=query_ok[:, None], other=0.0)  # (BLOCK_M, D)
        lse2 = tl.load(lse2_base + offs_m, mask=query_ok, other=0.0)  # (BLOCK_M,)
        delta = tl.load(delta_base + offs_m, mask=query_ok, other=0.0)  # (BLOCK_M,)
        # Recompute this tile of P, transposed (keys along rows): Pᵀ = 2^{S₂ᵀ − L₂}.
        s_t = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION, out_dtype=ACC) * qk_scale  # (BLOCK_N, BLOCK_M)
        p_t = tl.exp2(s_t - lse2[None, :])
        if MASKED:
            p_t = tl.where(offs_m[None, :] >= offs_n[:, None], p_t, 0.0)  # causal: query i sees keys j ≤ i
        dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=DOT_PRECISION, out_dtype=ACC)  # dV += Pᵀ dO
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION, out_dtype=ACC)  # dPᵀ = V dOᵀ
        ds_t = p_t * (dp_t - delta[None, :])  # dSᵀ = Pᵀ ⊙ (dPᵀ − Δ)
        dk = tl.dot(ds_t.to(q.dtype), q, dk, input_precision=DOT_PRECISION, out_dtype=ACC)  # dK += dSᵀ Q
    return dk, dv


@triton.autotune(configs=_DKDV_CONFIGS, key=_AUTOTUNE_KEY)
@triton.jit
def _flash_attention_backward_dk_dv_kernel(
    Q, K, V, DO, LSE2, Delta, DK, DV, qk_scale, scale,
    stride_qb, stride_qh, stride_qt, stride_qd,
    stride_kb, stride_kh, stride_kt, stride_kd,
    stride_vb, stride_vh, stride_vt, stride_vd,
    stride_dob, stride_doh, stride_dot, stride_dod,
    n_heads, q_len, k_len, q_len_bucket, k_len_bucket,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, ACC: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # Program (j, bh) owns key rows [j·BLOCK_N, (j+1)·BLOCK_N) of one (batch, head).
    start_n = tl.program_id(0) * BLOCK_N
    batch_head, q_base, k_base, v_base, do_base = _head_pointers(
        Q, K, V, DO, stride_qb, stride_qh, stride_kb, stride_kh, stride_vb, stride_vh, stride_dob, stride_doh, n_heads)
    offs_n = start_n + tl.arange(0, BLOCK_N)  # (BLOCK_N,)
    offs_d = tl.arange(0, HEAD_DIM)
    key_ok = offs_n < k_len
    k = tl.load(k_base + offs_n[:, None] * stride_kt + offs_d[None, :] * stride_kd,
                mask=key_ok[:, None], other=0.0)  # (BLOCK_N, D), stays in registers
    v = tl.load(v_base + offs_n[:, None] * stride_vt + offs_d[None, :] * stride_vd,
                mask=key_ok[:, None], other=0.0)  # (BLOCK_N, D)
    lse2_base = LSE2 + batch_head * q_len
    delta_base = Delta + batch_head * q_len
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=ACC)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=ACC)

    if CAUSAL:
        # Queries before start_n see none of these keys: start at the query block holding start_n.
        # Query blocks from the first one starting at or after the block's last key see all of them.
        first_query = (start_n // BLOCK_M) * BLOCK_M
        unmasked_start = tl.cdiv(start_n + BLOCK_N - 1, BLOCK_M) * BLOCK_M
        dk, dv = _dk_dv_over_queries(
            dk, dv, k, v, q_base, do_base, lse2_base, delta_base, stride_qt, stride_qd, stride_dot, stride_dod,
            offs_n, q_len, qk_scale, first_query, tl.minimum(unmasked_start, q_len),
            HEAD_DIM, BLOCK_M, True, ACC, DOT_PRECISION)
    else:
        unmasked_start = 0
    dk, dv = _dk_dv_over_queries(
        dk, dv, k, v, q_base, do_base, lse2_base, delta_base, stride_qt, stride_qd, stride_dot, stride_dod,
        offs_n, q_len, qk_scale, unmasked_start, q_len, HEAD_DIM, BLOCK_M, False, ACC, DOT_PRECISION)

    dk *= scale  # dK = c · dSᵀ Q: the scale of S = c Q Kᵀ, applied once at the end
    out_offsets = batch_head * k_len * HEAD_DIM + offs_n[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(DK + out_offsets, dk, mask=key_ok[:, None])  # DK and DV are ours, contiguous
    tl.store(DV + out_offsets, dv, mask=key_ok[:, None])


@triton.jit
def _dq_over_keys(
    dq, q, do, lse2, delta, k_base, v_base, stride_kt, stride_kd, stride_vt, stride_vd,
    offs_m, k_len, qk_scale, key_start, key_end,
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, MASKED: tl.constexpr,
    ACC: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Add the contributions of key blocks ``[key_start, key_end)`` to one query block's dQ."""
    offs_d = tl.arange(0, HEAD_DIM)
    for start_n in range(key_start, key_end, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        key_ok = offs_n < k_len
        k = tl.load(k_base + offs_n[:, None] * stride_kt + offs_d[None, :] * stride_kd,
                    mask=key_ok[:, None], other=0.0)  # (BLOCK_N, D)
        v = tl.load(v_base + offs_n[:, None] * stride_vt + offs_d[None, :] * stride_vd,
                    mask=key_ok[:, None], other=0.0)  # (BLOCK_N, D)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION, out_dtype=ACC) * qk_scale  # (BLOCK_M, BLOCK_N)
        p = tl.exp2(s - lse2[:, None])  # P = 2^{S₂ − L₂}, recomputed
        if MASKED:
            # dQ sums over keys, so keys past the end must not contribute: mask them (and the future).
            visible = key_ok[None, :]
            if CAUSAL:
                visible = visible & (offs_m[:, None] >= offs_n[None, :])
            p = tl.where(visible, p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION, out_dtype=ACC)  # dP = dO Vᵀ
        ds = p * (dp - delta[:, None])  # dS = P ⊙ (dP − Δ)
        dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=DOT_PRECISION, out_dtype=ACC)  # dQ += dS K
    return dq


@triton.autotune(configs=_DQ_CONFIGS, key=_AUTOTUNE_KEY)
@triton.jit
def _flash_attention_backward_dq_kernel(
    Q, K, V, DO, LSE2, Delta, DQ, qk_scale, scale,
    stride_qb, stride_qh, stride_qt, stride_qd,
    stride_kb, stride_kh, stride_kt, stride_kd,
    stride_vb, stride_vh, stride_vt, stride_vd,
    stride_dob, stride_doh, stride_dot, stride_dod,
    n_heads, q_len, k_len, q_len_bucket, k_len_bucket,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, ACC: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # Program (i, bh) owns query rows [i·BLOCK_M, (i+1)·BLOCK_M), like the forward.
    start_m = tl.program_id(0) * BLOCK_M
    batch_head, q_base, k_base, v_base, do_base = _head_pointers(
        Q, K, V, DO, stride_qb, stride_qh, stride_kb, stride_kh, stride_vb, stride_vh, stride_dob, stride_doh, n_heads)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    query_ok = offs_m < q_len
    q = tl.load(q_base + offs_m[:, None] * stride_qt + offs_d[None, :] * stride_qd,
                mask=query_ok[:, None], other=0.0)  # (BLOCK_M, D)
    do = tl.load(do_base + offs_m[:, None] * stride_dot + offs_d[None, :] * stride_dod,
                 mask=query_ok[:, None], other=0.0)  # (BLOCK_M, D)
    lse2 = tl.load(LSE2 + batch_head * q_len + offs_m, mask=query_ok, other=0.0)  # (BLOCK_M,)
    delta = tl.load(Delta + batch_head * q_len + offs_m, mask=query_ok, other=0.0)  # (BLOCK_M,)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=ACC)

    if CAUSAL:  # the same split of key blocks as the forward
        unmasked_end = ((start_m + 1) // BLOCK_N) * BLOCK_N
        masked_end = tl.minimum(start_m + BLOCK_M, k_len)
    else:
        unmasked_end = (k_len // BLOCK_N) * BLOCK_N
        masked_end = k_len
    dq = _dq_over_keys(dq, q, do, lse2, delta, k_base, v_base, stride_kt, stride_kd, stride_vt, stride_vd,
                       offs_m, k_len, qk_scale, 0, unmasked_end, HEAD_DIM, BLOCK_N, CAUSAL, False, ACC, DOT_PRECISION)
    dq = _dq_over_keys(dq, q, do, lse2, delta, k_base, v_base, stride_kt, stride_kd, stride_vt, stride_vd,
                       offs_m, k_len, qk_scale, unmasked_end, masked_end, HEAD_DIM, BLOCK_N, CAUSAL, True, ACC,
                       DOT_PRECISION)

    dq *= scale  # dQ = c · dS K
    out_offsets = batch_head * q_len * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(DQ + out_offsets, dq, mask=query_ok[:, None])


def _strides(x: torch.Tensor) -> tuple[int, int, int, int]:
    return x.stride(0), x.stride(1), x.stride(2), x.stride(3)


def _length_buckets(q_len: int, k_len: int) -> tuple[int, int]:
    """The sequence lengths rounded up to powers of two: what the autotuner's choice depends on."""
    return triton.next_power_of_2(q_len), triton.next_power_of_2(k_len)


def flash_attention_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernel on ``(B, H, T, D)`` inputs (any strides).

    Returns ``out`` (``(B, H, T_q, D)``, contiguous) and ``lse2`` (``(B, H, T_q)``, fp32 or fp64):
    each row's log-sum-exp in base 2, :math:`L_2 = \\log_2 \\sum_j 2^{S_2}`; the natural-log one is
    ``lse2 · ln 2``.
    """
    batch, heads, q_len, head_dim = q.shape
    k_len = k.shape[2]
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse2 = torch.empty(batch, heads, q_len, dtype=torch.float64 if q.dtype == torch.float64 else torch.float32,
                       device=q.device)

    def grid(meta):
        return triton.cdiv(q_len, meta["BLOCK_M"]), batch * heads

    _flash_attention_forward_kernel[grid](
        q, k, v, out, lse2, scale * math.log2(math.e),
        *_strides(q), *_strides(k), *_strides(v), *_strides(out),
        heads, q_len, k_len, *_length_buckets(q_len, k_len),
        HEAD_DIM=head_dim, CAUSAL=causal, ACC=accumulator_dtype(q.dtype), DOT_PRECISION=dot_precision(q.dtype),
    )
    return out, lse2


def flash_attention_backward(
    dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
    out: torch.Tensor, lse2: torch.Tensor, causal: bool, scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the three backward kernels (Δ, then dK/dV, then dQ); returns contiguous ``dq, dk, dv``."""
    batch, heads, q_len, head_dim = q.shape
    k_len = k.shape[2]
    acc = accumulator_dtype(q.dtype)
    precision = dot_precision(q.dtype)
    delta = torch.empty_like(lse2)  # (B, H, T_q)
    _backward_delta_kernel[(triton.cdiv(q_len, _DELTA_BLOCK_M), batch * heads)](
        out, dout, delta, *_strides(dout), heads, q_len, HEAD_DIM=head_dim, BLOCK_M=_DELTA_BLOCK_M, ACC=acc,
    )
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    qk_scale = scale * math.log2(math.e)
    common = (*_strides(q), *_strides(k), *_strides(v), *_strides(dout), heads, q_len, k_len,
              *_length_buckets(q_len, k_len))

    def key_grid(meta):
        return triton.cdiv(k_len, meta["BLOCK_N"]), batch * heads

    def query_grid(meta):
        return triton.cdiv(q_len, meta["BLOCK_M"]), batch * heads

    _flash_attention_backward_dk_dv_kernel[key_grid](
        q, k, v, dout, lse2, delta, dk, dv, qk_scale, scale, *common,
        HEAD_DIM=head_dim, CAUSAL=causal, ACC=acc, DOT_PRECISION=precision,
    )
    _flash_attention_backward_dq_kernel[query_grid](
        q, k, v, dout, lse2, delta, dq, qk_scale, scale, *common,
        HEAD_DIM=head_dim, CAUSAL=causal, ACC=acc, DOT_PRECISION=precision,
    )
    return dq, dk, dv


class FlashAttentionFunction(torch.autograd.Function):
    """FlashAttention-2 forward and backward in Triton. Saves q, k, v, the output and L₂ — never P."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float) -> torch.Tensor:
        out, lse2 = flash_attention_forward(q, k, v, causal, scale)
        ctx.save_for_backward(q, k, v, out, lse2)
        ctx.causal = causal
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, dout: torch.Tensor):
        q, k, v, out, lse2 = ctx.saved_tensors
        dq, dk, dv = flash_attention_backward(dout, q, k, v, out, lse2, ctx.causal, ctx.scale)
        return dq, dk, dv, None, None
