"""The shared input checks of ``llm_tutorial._checks``: what passes, what fails, and the message."""

from __future__ import annotations

import math

import pytest
import torch

from llm_tutorial._checks import (
    check_bool,
    check_int,
    check_number,
    check_positive_int,
    check_positive_number,
    check_probability,
    check_same_dtype_and_device,
)


@pytest.mark.parametrize("value", [True, False, 1.0, "3", None, 2**0.5])
def test_check_int_refuses_what_is_not_an_int(value):
    with pytest.raises(ValueError, match=r"n must be an integer, got"):
        check_int(value, "n")


@pytest.mark.parametrize(
    "value,low,high,message",
    [
        (0, 1, None, "n must be a positive integer, got 0"),
        (-1, 0, None, "n must be a non-negative integer, got -1"),
        (3, 5, None, "n must be an integer ≥ 5, got 3"),
        (9, 2, 8, r"n must be an integer in \[2, 8\], got 9"),
        (1, 2, 8, r"n must be an integer in \[2, 8\], got 1"),
        (5, None, 4, "n must be an integer ≤ 4, got 5"),
    ],
)
def test_check_int_bounds_are_inclusive_and_named(value, low, high, message):
    with pytest.raises(ValueError, match=message):
        check_int(value, "n", low, high)
    inside = high if high is not None else low
    assert check_int(inside, "n", low, high) == inside


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, "1e-5", None, torch.tensor(1.0)])
def test_check_number_refuses_nan_infinity_bools_and_strings(value):
    with pytest.raises(ValueError, match="x must be a positive number"):
        check_positive_number(value, "x")


def test_check_number_bounds():
    assert check_number(0, "x", 0) == 0.0 and isinstance(check_number(3, "x", 0), float)
    with pytest.raises(ValueError, match=r"x must be a number > 1 \(hint\), got 1"):
        check_number(1, "x", 1, above=True, hint=" (hint)")
    with pytest.raises(ValueError, match=r"x must be a number in \[0, 0.5\], got 0.75"):
        check_number(0.75, "x", 0, 0.5)
    with pytest.raises(ValueError, match="x must be a finite number, got nan"):
        check_number(math.nan, "x")
    assert check_positive_int(3, "n") == 3 and check_positive_number(1e-8, "eps") == 1e-8


def test_check_probability_and_bool():
    assert check_probability(1, "p") == 1.0
    for value in (True, math.nan, 1.0 + 1e-9, -0.0 - 1e-9):
        with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\]"):
            check_probability(value, "p")
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\)"):
        check_probability(1.0, "p", inclusive_high=False)
    assert check_bool(False, "flag") is False
    for value in (0, 1, "True", None):
        with pytest.raises(TypeError, match="flag must be True or False"):
            check_bool(value, "flag")


def test_same_dtype_and_device():
    x = torch.zeros(2)
    check_same_dtype_and_device({"a": x, "b": x.clone()})
    with pytest.raises(TypeError, match="a and b must share one dtype, got torch.float32 and torch.float64"):
        check_same_dtype_and_device({"a": x, "b": x.double()})
    with pytest.raises(ValueError, match="a on cpu, b on meta"):
        check_same_dtype_and_device({"a": x, "b": x.to("meta")})
