"""Matching gradients to variables: the one place the engine pairs them up.

Blocks return their variable gradients as `(variable, gradient)` pairs (see
`InvertibleLayer.backward`). `tf.custom_gradient`'s `grad_fn` receives the
underlying `tf.Variable`s (MirroredVariables under a strategy), not the Keras
variables, in no guaranteed order, and a variable may be shared by several
blocks: `match_gradients` returns, for exactly the variables it is given, the
sum of their gradients.
"""


def _key(variable):
    """A hashable identity of the `tf.Variable` behind a (Keras or TF) variable."""
    variable = getattr(variable, "_value", variable)  # keras.Variable -> tf.Variable
    return variable.ref() if hasattr(variable, "ref") else variable


def match_gradients(variables, pairs):
    """Gradients aligned with `variables` from `(variable, gradient)` pairs.

    Args:
        variables: Keras variables or the `tf.Variable`s behind them.
        pairs: iterable of `(variable, gradient)`; `None` gradients are skipped
            and the gradients of a variable that appears several times are summed.

    Returns:
        A list, one entry per variable: the summed gradient, or `None` for a
        variable no pair mentions.
    """
    summed = {}
    for variable, grad in pairs:
        if grad is None:
            continue
        key = _key(variable)
        summed[key] = grad if key not in summed else summed[key] + grad
    return [summed.get(_key(variable)) for variable in variables]
