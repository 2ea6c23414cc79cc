"""attention_heatmap draws what it is given, at readable sizes, and refuses mismatched labels."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from llm_tutorial.plotting import MIN_FONT_SIZE, attention_heatmap  # noqa: E402


def test_draws_the_weights_with_token_ticks():
    weights = torch.softmax(torch.randn(5, 5), -1)
    fig, ax = plt.subplots()
    image = attention_heatmap(ax, weights, ["a", "b", "c", "d", " e"], "head 1")
    assert image.get_array().shape == (5, 5)
    assert torch.allclose(torch.as_tensor(image.get_array().data), weights)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c", "d", "e"]
    assert all(t.get_fontsize() >= MIN_FONT_SIZE for t in ax.get_xticklabels() + ax.get_yticklabels())
    assert image.get_clim() == (0, 1)
    plt.close(fig)


@pytest.mark.parametrize("weights, labels", [(torch.rand(3, 3), ["a", "b"]), (torch.rand(3), ["a", "b", "c"])])
def test_mismatch_is_an_error(weights, labels):
    fig, ax = plt.subplots()
    with pytest.raises(ValueError):
        attention_heatmap(ax, weights, labels)
    plt.close(fig)


def test_cross_attention_has_its_own_query_labels():
    weights = torch.softmax(torch.randn(3, 5), -1)  # 3 decoder steps × 5 encoder positions
    fig, ax = plt.subplots()
    image = attention_heatmap(ax, weights, list("abcde"), query_labels=["x", "y", "z"])
    assert torch.allclose(torch.as_tensor(image.get_array().data), weights)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y", "z"]
    assert [t.get_text() for t in ax.get_xticklabels()] == list("abcde")
    with pytest.raises(ValueError, match="query labels"):
        attention_heatmap(ax, weights, list("abcde"), query_labels=["x", "y"])
    plt.close(fig)
