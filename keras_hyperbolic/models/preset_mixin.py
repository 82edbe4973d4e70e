"""`PresetMixin`: `from_preset` and `presets()` for a model class, over the data of `presets.py`.

As keras-hub registers presets on a class: each entry of
`keras_hyperbolic.models.presets.PRESETS` names the model class it builds
(`"model"`), and a class with this mixin builds the presets registered to
it (or to a class it derives from). The constructor's keyword arguments are
the preset's `config`, plus the preset fields the class lists in
`preset_arguments` (e.g. `input_shape`), then the caller's overrides;
arguments a preset does not fix (a segmenter's `num_classes`) are passed as
overrides.

This module imports neither TensorFlow nor Keras.
"""

import inspect

from keras_hyperbolic.models.presets import PRESETS, get_preset


class PresetMixin:
    """Builds a model class from the presets registered to it (mixin for `keras.Model`s).

    Example:
    >>> model = HyperbolicSegmenter.from_preset("tiny_2d", num_classes=2, width=8)
    >>> sorted(IRevNet.presets())
    ['irevnet_a', 'irevnet_b', 'irevnet_cifar']
    """

    #: Preset fields besides `config` that are constructor arguments of the class.
    preset_arguments = ()

    @classmethod
    def _preset_models(cls):
        # The class and its bases: a subclass builds its parent's presets.
        return {base.__name__ for base in cls.__mro__}

    @classmethod
    def presets(cls):
        """`{name: description}` of the presets this class builds, sorted by name."""
        models = cls._preset_models()
        return {name: PRESETS[name]["description"] for name in sorted(PRESETS)
                if PRESETS[name]["model"] in models}

    @classmethod
    def from_preset(cls, name, **overrides):
        """The model of preset `name` (see `keras_hyperbolic.models.presets`), `overrides` applied.

        Args:
            name: one of `cls.presets()`.
            **overrides: constructor arguments that replace the preset's or
                add those it does not fix (e.g. `num_classes`).

        Raises:
            ValueError: `name` is not a preset, is a preset of another model,
                or a required constructor argument is missing.
        """
        own = cls.presets()
        if not isinstance(name, str) or name not in own:
            other = PRESETS[name]["model"] if isinstance(name, str) and name in PRESETS else None
            builds = f"preset {name!r} is one of {other}, not of {cls.__name__}; " if other else ""
            raise ValueError(
                f"Invalid value for argument `name` of {cls.__name__}.from_preset: {builds}"
                f"expected one of {sorted(own)}. Received: name={name!r}"
            )
        preset = get_preset(name)
        config = {key: preset[key] for key in cls.preset_arguments}
        config.update(preset["config"])
        config.update(overrides)
        missing = [
            parameter.name
            for parameter in list(inspect.signature(cls.__init__).parameters.values())[1:]
            if parameter.default is inspect.Parameter.empty
            and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
            and parameter.name not in config
        ]
        if missing:
            raise ValueError(
                f"Missing argument(s) {', '.join(f'`{m}`' for m in missing)} of "
                f"{cls.__name__}.from_preset: preset {name!r} does not fix them; pass them "
                f"as keyword arguments, e.g. {cls.__name__}.from_preset({name!r}, {missing[0]}=...)"
            )
        return cls(**config)
