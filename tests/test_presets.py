"""One preset registry and one `from_preset` (`PresetMixin`) for every model that has presets."""

import pytest

from keras_hyperbolic.models import (
    PRESETS,
    HyperbolicSegmenter,
    HyperbolicVAE,
    IRevNet,
    PresetMixin,
    get_preset,
)

CLASSES = (HyperbolicSegmenter, IRevNet, HyperbolicVAE)


def _config(model):
    return {k: v for k, v in model.get_config().items() if k != "name"}


def test_every_preset_is_registered_to_exactly_one_class():
    owners = {}
    for cls in CLASSES:
        assert cls.from_preset.__func__ is PresetMixin.from_preset.__func__
        for name, description in cls.presets().items():
            assert name not in owners and description == PRESETS[name]["description"]
            owners[name] = cls.__name__
    assert owners == {name: preset["model"] for name, preset in PRESETS.items()}


def test_segmenter_preset_takes_num_classes_and_overrides():
    model = HyperbolicSegmenter.from_preset("tiny_2d", num_classes=3, width=8)
    expected = HyperbolicSegmenter(num_classes=3, **dict(get_preset("tiny_2d")["config"], width=8))
    assert _config(model) == _config(expected)
    assert model.num_classes == 3 and model.width == 8


def test_irevnet_preset_fixes_classes_and_input_shape_unless_overridden():
    model = IRevNet.from_preset("irevnet_cifar", stages=(1, 1, 1))
    assert (model.num_classes, model.example_shape) == (10, (32, 32, 3))
    assert model.injective and model.stem_channels == 32
    model = IRevNet.from_preset("irevnet_cifar", num_classes=4, input_shape=(16, 16, 3),
                                stages=(1, 1, 1))
    assert (model.num_classes, model.example_shape) == (4, (16, 16, 3))


def test_vae_preset_fixes_the_data_shape():
    model = HyperbolicVAE.from_preset("lensink_mnist", levels=2, depth=1)
    assert model.data_shape == (32, 32, 1) and (model.levels, model.depth) == (2, 1)
    assert model.latent_std == 0.1 and model.h == 0.01


def test_unknown_preset_names_the_argument_and_value():
    with pytest.raises(ValueError, match=r"`name` of IRevNet.from_preset.*irevnet_b.*"
                                         r"Received: name='nope'"):
        IRevNet.from_preset("nope")
    with pytest.raises(ValueError, match=r"Received: name=\['tiny_2d'\]"):
        HyperbolicSegmenter.from_preset(["tiny_2d"], num_classes=2)


def test_preset_of_another_model_names_both():
    with pytest.raises(ValueError, match=r"'lensink_mnist' is one of HyperbolicVAE, not of "
                                         r"HyperbolicSegmenter.*Received: name='lensink_mnist'"):
        HyperbolicSegmenter.from_preset("lensink_mnist", num_classes=2)


def test_missing_required_argument_is_named():
    with pytest.raises(ValueError, match=r"Missing argument\(s\) `num_classes`.*'video_cpu'"):
        HyperbolicSegmenter.from_preset("video_cpu")


def test_a_subclass_builds_its_parents_presets():
    class Segmenter(HyperbolicSegmenter):
        pass

    assert Segmenter.presets() == HyperbolicSegmenter.presets()
    assert isinstance(Segmenter.from_preset("tiny_2d", num_classes=2), Segmenter)
