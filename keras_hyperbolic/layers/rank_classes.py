"""The public 1D/2D/3D classes of a rank-generic layer, made in one place.

Keras writes `Conv1D`, `Conv2D` and `Conv3D` as thin subclasses of `BaseConv`
that fix `rank`. `rank_classes` makes such subclasses from the private base, so
that they cannot drift apart (iunets' copy-pasted 1D upsampling kept a
`_pair(stride)`): each takes the base's arguments but `rank`, carries its own
docstring and is registered for `.keras` saving under its own name.
"""

import inspect

import keras

SPATIAL_NAMES = ("d1", "d2", "d3")


def rank_doc(template, rank, **fields):
    """`template` formatted for `rank`.

    Besides `fields`, the template may use `{rank}`, `{s}` (`2**rank`),
    `{spatial}` (`d1, d2`), `{half}` (`d1 / 2, d2 / 2`) and `{double}`
    (`2 * d1, 2 * d2`).
    """
    names = SPATIAL_NAMES[:rank]
    return template.format(
        rank=rank,
        s=2**rank,
        spatial=", ".join(names),
        half=", ".join(f"{n} / 2" for n in names),
        double=", ".join(f"2 * {n}" for n in names),
        **fields,
    )


def _rank_class(base, name, rank, doc, signature):
    def __init__(self, *args, **kwargs):
        base.__init__(self, rank, *args, **kwargs)

    # What `help()` and Keras's argument capture see: the base's arguments but `rank`.
    __init__.__signature__ = signature
    __init__.__qualname__ = f"{name}.__init__"
    __init__.__module__ = base.__module__
    cls = type(
        name,
        (base,),
        {"__init__": __init__, "__doc__": doc, "__module__": base.__module__, "__qualname__": name},
    )
    return keras.saving.register_keras_serializable(package="keras_hyperbolic")(cls)


def rank_classes(base, name, doc, ranks=(1, 2, 3)):
    """The public classes `{name}1D`, `{name}2D`, `{name}3D` of a rank-generic base.

    Args:
        base: the private base; its `__init__` takes `rank` first.
        name: the public name without its `1D`/`2D`/`3D` suffix.
        doc: function of the rank returning the class's docstring.
        ranks: the ranks to make classes for.

    Returns:
        A tuple of the classes, one per rank in `ranks`; `{name}2D(*args, **kwargs)`
        is `base(2, *args, **kwargs)`.
    """
    signature = inspect.signature(base.__init__)
    signature = signature.replace(
        parameters=[p for p in signature.parameters.values() if p.name != "rank"]
    )
    return tuple(_rank_class(base, f"{name}{rank}D", rank, doc(rank), signature) for rank in ranks)
