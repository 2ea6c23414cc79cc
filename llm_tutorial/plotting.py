"""Figures the chapters share, drawn one way everywhere: attention maps and the book's figure style.

matplotlib is imported inside each function, so importing the package never starts a plotting
backend.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._checks import check_rank, check_tensor

# Tick labels stay readable at the book's column width (about 7 inches drawn at 100%): 8 pt or more.
MIN_FONT_SIZE = 8


def use_book_style() -> None:
    """Sharp figures with readable labels: SVG output in notebooks, 8 pt text at least.

    Call once at the top of a chapter. SVG stays sharp on high-density screens and when printed.
    """
    import matplotlib as mpl

    mpl.rcParams.update({
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.labelsize": 9,
        "xtick.labelsize": MIN_FONT_SIZE,
        "ytick.labelsize": MIN_FONT_SIZE,
        "legend.fontsize": MIN_FONT_SIZE,
        "figure.dpi": 100,
        "savefig.dpi": 200,
        "svg.fonttype": "path",  # glyphs as outlines: the page needs no font to draw them
    })
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    if get_ipython() is not None:
        set_matplotlib_formats("svg")


def attention_heatmap(ax, weights: torch.Tensor, labels: Sequence[str], title: str = "", *,
                      keys_label: bool = True, queries_label: bool = True, cmap: str = "viridis",
                      query_labels: Sequence[str] | None = None):
    """Draw one head's attention weights ``(T, T)`` on ``ax``: queries down, keys across.

    Rows are queries (the token attending), columns keys (the token attended to); weights are drawn
    on a fixed 0–1 scale so maps can be compared. For cross-attention, whose queries (the decoder's
    tokens) are not its keys (the encoder's), give ``query_labels``: ``weights`` is then
    ``(len(query_labels), len(labels))``. Returns the image, for ``fig.colorbar``.
    """
    weights = check_tensor(weights, "weights")
    check_rank(weights, "weights", 2, "(T_query, T_key)")
    if query_labels is not None:
        if weights.shape != (len(query_labels), len(labels)):
            raise ValueError(f"weights {tuple(weights.shape)} do not match {len(query_labels)} query labels "
                             f"and {len(labels)} key labels")
    elif weights.shape[1] != len(labels) or weights.shape[0] not in (1, len(labels)):
        raise ValueError(f"weights {tuple(weights.shape)} do not match {len(labels)} token labels")
    labels = [str(label).strip() or repr(label) for label in labels]
    rows = labels[: weights.shape[0]] if weights.shape[0] > 1 else labels[-1:]
    if query_labels is not None:
        rows = [str(label).strip() or repr(label) for label in query_labels]
    image = ax.imshow(weights.detach().float().cpu(), cmap=cmap, vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=MIN_FONT_SIZE)
    ax.set_yticks(range(weights.shape[0]), rows, fontsize=MIN_FONT_SIZE)
    if keys_label:
        ax.set_xlabel("key: the token attended to")
    if queries_label:
        ax.set_ylabel("query: the token attending")
    if title:
        ax.set_title(title)
    return image
