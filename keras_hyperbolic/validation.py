"""Argument checks shared by every layer and model.

Every check raises before any work is done, with a message that names the
argument and the value received (the Keras convention).
"""

import math
import numbers


def invalid(name, value, expected):
    """The `ValueError` for argument `name`: what was expected and what came."""
    return ValueError(
        f"Invalid value for argument `{name}`. Expected {expected}. "
        f"Received: {name}={value!r}"
    )


def check_rank(rank, name="rank"):
    """`rank` as an int: one of 1, 2, 3 (the number of spatial axes), not a bool."""
    if isinstance(rank, bool) or rank not in (1, 2, 3):
        raise invalid(name, rank, "one of 1, 2, 3 (the number of spatial axes)")
    return int(rank)


def check_choice(value, choices, name):
    """`value`, a string that is one of `choices`."""
    if not isinstance(value, str) or value not in choices:
        raise invalid(name, value, f"one of {sorted(choices)}")
    return value


def check_positive_int(value, name, minimum=1):
    """`value` as an int: an integer (not a bool) `>= minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise invalid(name, value, f"an integer >= {minimum}")
    return int(value)


def check_positive_float(value, name):
    """`value` as a float: a real number (not a bool) `> 0`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise invalid(name, value, "a positive number")
    return float(value)


def check_finite_float(value, name, positive=False):
    """`value` as a float: a real number (not a bool), finite, and `> 0` where
    `positive`, `>= 0` otherwise."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or not (value > 0 if positive else value >= 0)
    ):
        expected = "a positive, finite number" if positive else "a finite number >= 0"
        raise invalid(name, value, expected)
    return float(value)


def check_input_shape(shape, rank, name="inputs", divisor=2, require_static=True):
    """Checks a channels_last shape `(batch, *spatial, channels)`.

    Spatial sizes must be divisible by `divisor` (invertible down-sampling by 2
    needs even sizes). `None` spatial sizes are allowed unless `require_static`.
    The channel axis must always be known, since it sizes the weights.
    """
    shape = tuple(shape)
    if len(shape) != rank + 2:
        raise ValueError(
            f"Invalid shape for argument `{name}`: expected rank {rank + 2} "
            f"(batch, {rank} spatial axes, channels) for a layer of rank {rank}. "
            f"Received: {name}.shape={shape}"
        )
    if shape[-1] is None:
        raise ValueError(
            f"Invalid shape for argument `{name}`: the channel axis must be known. "
            f"Received: {name}.shape={shape}"
        )
    for axis, size in enumerate(shape[1:-1], start=1):
        if size is None:
            if require_static:
                raise ValueError(
                    f"Invalid shape for argument `{name}`: spatial axis {axis} must be "
                    f"known here. Received: {name}.shape={shape}"
                )
            continue
        if divisor > 1 and size % divisor != 0:
            raise ValueError(
                f"Invalid shape for argument `{name}`: spatial axis {axis} has size "
                f"{size}, which is not divisible by {divisor}. Received: {name}.shape={shape}"
            )
    return shape


def check_divisible_input(shape, rank, multiple, steps, name="inputs"):
    """Raises when a known spatial size of `shape` is not divisible by `multiple` (= 2**steps).

    For a network that halves every spatial axis `steps` times; otherwise as
    `check_input_shape` (rank, known channels).
    """
    shape = check_input_shape(shape, rank, name=name, divisor=1, require_static=False)
    for axis, size in enumerate(shape[1:-1], start=1):
        if size is not None and size % multiple:
            raise ValueError(
                f"Invalid shape for argument `{name}`: spatial axis {axis} has size {size}, "
                f"which is not divisible by {multiple} (= 2**{steps}: the network halves every "
                f"spatial axis {steps} times). Use sizes that are multiples of {multiple}. "
                f"Received: {name}.shape={shape}"
            )
    return shape


def check_optional_positive_int(value, name, minimum=1):
    """`None`, or an integer >= `minimum`."""
    return None if value is None else check_positive_int(value, name, minimum)


def check_activation(activation, name="activation"):
    """The Keras activation function for `activation` (a name or a callable)."""
    import keras

    try:
        return keras.activations.get(activation)
    except (ValueError, TypeError):
        raise invalid(name, activation, "a Keras activation name or callable") from None


def check_data_shape(input_shape, name="input_shape"):
    """A model's example shape `(*spatial, channels)`: a tuple of positive integers."""
    import numpy as np

    if isinstance(input_shape, (int, np.integer)) or not hasattr(input_shape, "__len__"):
        raise invalid(name, input_shape, "a tuple (*spatial, channels)")
    input_shape = tuple(input_shape)
    if any(
        isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in input_shape
    ):
        raise invalid(name, input_shape, "a tuple of positive integers")
    return input_shape
