"""`ReversibleSequence`: a stack of invertible layers whose training memory is flat in depth.

With `memory_efficient=True` the whole stack runs under ONE `tf.custom_gradient`
that keeps only the stack's output. The gradient function walks the blocks
from the top, and for each block calls `block.backward(y, dy)`, which rebuilds
the block's input by inversion and returns the gradients (coupling blocks fuse
the two: the function evaluations made while inverting are reused for the
vector-Jacobian product). Why it is built this way (docs/design.md, "The memory engine"; measured on TF 2.21):

- A custom gradient per block saves nothing: each closure keeps its output alive.
- In graph mode the executor would run the whole inverse chain early (it does
  not depend on the incoming gradient) and hold every rebuilt tensor. So each
  rebuild is made to wait, through control dependencies, for the gradient of
  the block above and for that block's weight gradients.
- The rebuild runs inside a `keras.StatelessScope`, so layers with state
  (BatchNormalization moving statistics) are updated exactly once per step, by
  the forward pass, and not again during the rebuild.
- Layers with random state (dropout, noise) cannot reproduce their draw during
  the rebuild and are refused.
- Between pair-state layers (leapfrog blocks, pair poolings: `pair_state`)
  the state and its gradient travel as their two channel halves
  (`backward_halves`), not concatenated by one layer only to be split by the
  next: with TensorFlow's memory profiler that was two state-sized copies
  alive at the peak of every block's rebuild.
- Blocks return `(variable, gradient)` pairs; `grad_fn` receives the
  underlying `tf.Variable`s in no guaranteed order, and `match_gradients`
  (gradients.py) is the one place that pairs them up.
"""

import contextlib

import keras
import tensorflow as tf

from keras_hyperbolic.layers.invertible import InvertibleLayer
from keras_hyperbolic.reversible.gradients import match_gradients


@contextlib.contextmanager
def record_inputs(stacks):
    """Records the inputs that each `ReversibleSequence` in `stacks` receives.

    Only eager calls are recorded (a traced call has symbolic inputs). Used by
    `keras_hyperbolic.callbacks.InversionMonitor` to probe each stack on what
    the model really feeds it.

    Args:
        stacks: an iterable of `ReversibleSequence`s.

    Yields:
        A list with one list per stack (same order), filled by the calls made
        inside the `with` block.

    Example:
    >>> with record_inputs([stack]) as (seen,):
    ...     model(x)
    >>> stack.reconstruction_error(seen[0])
    """
    stacks = list(stacks)
    for stack in stacks:
        if not isinstance(stack, ReversibleSequence):
            raise TypeError(
                "Invalid value for argument `stacks`. Expected ReversibleSequence "
                f"layers. Received: an element of type {type(stack).__name__}"
            )
    records = [[] for _ in stacks]
    previous = [stack._input_recorder for stack in stacks]
    # A bound `append`, not the list: Keras would track (copy) a list attribute.
    for stack, record in zip(stacks, records):
        stack._input_recorder = record.append
    try:
        yield records
    finally:
        for stack, recorder in zip(stacks, previous):
            stack._input_recorder = recorder


def all_layers(layer):
    """`layer` and all its sub-layers, recursively, each once, outermost first.

    Keras 3 has no public API for this: `Model.layers` is one level deep and
    exists on models only, so a stack held by a plain custom layer would be
    missed. Keras's own `_flatten_layers` is the one private call, kept here.
    """
    return layer._flatten_layers(include_self=True, recursive=True)


def _random_sublayers(layer):
    """Sub-layers that draw random numbers when called (dropout, noise)."""
    found = []
    for sub in all_layers(layer):
        if hasattr(sub, "seed_generator") or isinstance(sub, keras.layers.Dropout):
            found.append(sub)
    return found


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class ReversibleSequence(InvertibleLayer):
    """A stack of invertible layers trained with activations rebuilt by inversion.

    Composes invertible layers (reversible blocks, invertible convolutions and
    the invertible poolings) into one invertible layer. With
    `memory_efficient=True` (the default) a training step stores only the
    stack's output: every block's input is rebuilt by inverting the block
    above it during the backward pass, so memory does not grow with depth.
    With `memory_efficient=False` the stack is plain autodiff, the reference.
    Both give the same gradients (to float round-off).

    Args:
        layers: a non-empty list of `InvertibleLayer`s, applied in order.
        memory_efficient: rebuild activations by inversion during backprop
            (True) or store them (False).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Input shape:
        What the first layer takes (channels_last).

    Output shape:
        What the last layer returns.

    Raises:
        TypeError: when an element of `layers` is not invertible.
        ValueError: when `layers` is empty, or when `memory_efficient=True`
            and a block contains layers with random state (dropout).

    Example:
    >>> stack = ReversibleSequence(
    ...     [AdditiveCoupling(rank=2) for _ in range(8)], memory_efficient=True)
    >>> y = stack(tf.random.normal((2, 16, 16, 8)), training=True)
    >>> x = stack.inverse(y)

    References:
        Gomez et al., "The Reversible Residual Network" (2017);
        Lensink, Peters, Haber, "Fully Hyperbolic Convolutional Neural
        Networks" (2022), section 5.
    """

    def __init__(self, layers, memory_efficient=True, **kwargs):
        blocks = layers if isinstance(layers, (list, tuple)) else []
        super().__init__(
            # The stack's log-det is the sum of its blocks'.
            is_constant_jacobian=all(getattr(b, "is_constant_jacobian", False) for b in blocks),
            is_volume_preserving=all(getattr(b, "is_volume_preserving", False) for b in blocks),
            **kwargs,
        )
        if isinstance(layers, keras.layers.Layer) or not isinstance(layers, (list, tuple)):
            raise TypeError(
                "Invalid value for argument `layers`. Expected a list of invertible "
                f"layers. Received: layers={layers!r}"
            )
        if not layers:
            raise ValueError(
                "Invalid value for argument `layers`. Expected a non-empty list. "
                "Received: layers=[]"
            )
        for index, layer in enumerate(layers):
            if not isinstance(layer, InvertibleLayer):
                raise TypeError(
                    f"Invalid value for argument `layers`: element {index} "
                    f"({getattr(layer, 'name', layer)!r}, of type {type(layer).__name__}) "
                    "is not an invertible layer. ReversibleSequence takes "
                    "keras_hyperbolic InvertibleLayer instances (call, inverse, "
                    "log_det_jacobian)."
                )
        if not isinstance(memory_efficient, bool):
            raise ValueError(
                "Invalid value for argument `memory_efficient`. Expected True or False. "
                f"Received: memory_efficient={memory_efficient!r}"
            )
        if memory_efficient:
            for layer in layers:
                random = _random_sublayers(layer)
                if random:
                    raise ValueError(
                        f"Layer {layer.name!r} contains layers with random state "
                        f"({', '.join(sorted({type(r).__name__ for r in random}))}), "
                        "whose draw cannot be reproduced when the block is rebuilt "
                        "by inversion. Remove them, or use "
                        "ReversibleSequence(..., memory_efficient=False)."
                    )
        self.blocks = list(layers)
        self.memory_efficient = memory_efficient
        # Called with this stack's eager inputs inside `record_inputs` (None: off).
        self._input_recorder = None

    # === Shapes and building ===

    def build(self, input_shape):
        shape = tuple(input_shape)
        #: The input shape the stack was built for (read by memory estimates).
        self.built_input_shape = shape
        for layer in self.blocks:
            if not layer.built:
                layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))
        self.built = True

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.blocks:
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    def compute_input_shape(self, output_shape):
        shape = tuple(output_shape)
        for layer in reversed(self.blocks):
            shape = tuple(layer.compute_input_shape(shape))
        return shape

    # === Maps ===

    def call(self, inputs, training=None):
        if self._input_recorder is not None and tf.executing_eagerly():
            self._input_recorder(inputs)
        if not self.memory_efficient:
            outputs = inputs
            for layer in self.blocks:
                outputs = layer(outputs, training=training)
            return outputs
        return self._memory_efficient_call(inputs, training)

    def _inverse(self, outputs, training=None):
        inputs = outputs
        for layer in reversed(self.blocks):
            inputs = layer.inverse(inputs, training=training)
        return inputs

    def _log_det_jacobian(self, inputs, training=None):
        return self._forward_and_log_det(inputs, training=training)[1]

    def _forward_and_log_det(self, inputs, training=None):
        if self.memory_efficient:
            return self._memory_efficient_call(inputs, training, with_log_det=True)
        return self._plain_forward_and_log_det(inputs, training)

    def _plain_forward_and_log_det(self, inputs, training):
        outputs = inputs
        log_det = tf.zeros(tf.shape(outputs)[:1], dtype=self.variable_dtype)
        for layer in self.blocks:
            outputs, block_log_det = layer.forward_and_log_det(outputs, training=training)
            log_det = log_det + tf.cast(block_log_det, log_det.dtype)
        return outputs, log_det

    def _backward(self, outputs, grad_outputs, training=None, dlog_det=None):
        # A nested ReversibleSequence is one more block to the engine.
        return self._backward_through_blocks(outputs, grad_outputs, training, dlog_det)

    def reconstruction_error(self, inputs, training=False):
        """`||inverse(call(x)) - x|| / ||x||` in float64: how far inversion has drifted."""
        inputs = tf.convert_to_tensor(inputs)
        rebuilt = self.inverse(self(inputs, training=training), training=training)
        difference = tf.cast(rebuilt, tf.float64) - tf.cast(inputs, tf.float64)
        return tf.norm(difference) / (tf.norm(tf.cast(inputs, tf.float64)) + 1e-30)

    # === The engine ===

    def _backward_through_blocks(self, outputs, grad_outputs, training, dlog_det=None):
        """Walks the blocks from the top; returns (x, dx, [(variable, grad), ...])."""
        pairs = []
        waits_for = [grad_outputs]
        # Between pair-state layers (leapfrog blocks, pair poolings) the state
        # and its gradient travel as their two halves: `halves` is True while
        # `outputs` and `grad_outputs` are `(prev, cur)` tuples.
        halves = False
        for layer in reversed(self.blocks):
            use_halves = layer.pair_state and (dlog_det is None or layer.is_volume_preserving)
            if use_halves and not halves:
                outputs, grad_outputs = _split_pair(outputs), _split_pair(grad_outputs)
            elif halves and not use_halves:
                outputs, grad_outputs = _join_pair(outputs), _join_pair(grad_outputs)
            halves = use_halves
            # Rebuild this block only once the block above has produced its
            # input gradient and weight gradients (else graph mode runs the
            # whole inverse chain early and holds every rebuilt tensor).
            with tf.control_dependencies(waits_for):
                outputs = tf.nest.map_structure(tf.identity, outputs)
            # The total log-det is the sum of the blocks': each block gets the
            # same incoming gradient (volume-preserving blocks drop it).
            # Moving statistics were updated by the forward pass; the rebuild
            # must not update them again.
            with keras.StatelessScope():
                if halves:
                    inputs, grad_inputs, block_pairs = layer.backward_halves(
                        outputs, grad_outputs, training=training
                    )
                else:
                    inputs, grad_inputs, block_pairs = layer.backward(
                        outputs, grad_outputs, training=training, dlog_det=dlog_det
                    )
            pairs.extend(block_pairs)
            waits_for = tf.nest.flatten(grad_inputs) + [g for _, g in block_pairs if g is not None]
            outputs, grad_outputs = inputs, grad_inputs
        if halves:
            outputs, grad_outputs = _join_pair(outputs), _join_pair(grad_outputs)
        return outputs, grad_outputs, pairs

    def _memory_efficient_call(self, inputs, training, with_log_det=False):
        # `training` is closed over: inside tf.function a custom_gradient
        # function cannot take keyword arguments.
        @tf.custom_gradient
        def reversible_stack(stack_inputs):
            if with_log_det:
                outputs, log_det = self._plain_forward_and_log_det(stack_inputs, training)
            else:
                outputs = stack_inputs
                for layer in self.blocks:
                    outputs = layer(outputs, training=training)

            def grad_fn(*grad_results, variables=None):
                grad_outputs = grad_results[0]
                grad_log_det = grad_results[1] if with_log_det else None
                _, grad_inputs, pairs = self._backward_through_blocks(
                    outputs, grad_outputs, training, grad_log_det
                )
                return grad_inputs, match_gradients(variables or [], pairs)

            if with_log_det:
                return (outputs, log_det), grad_fn
            return outputs, grad_fn

        return reversible_stack(inputs)

    # === Config ===

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "layers": [keras.saving.serialize_keras_object(layer) for layer in self.blocks],
                "memory_efficient": self.memory_efficient,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layers"] = [
            keras.saving.deserialize_keras_object(layer) for layer in config["layers"]
        ]
        return cls(**config)


def _split_pair(pair):
    return tuple(tf.split(pair, 2, axis=-1))


def _join_pair(halves):
    return tf.concat(halves, axis=-1)


def reversible_layers(model):
    """Every `ReversibleSequence` in `model` (itself included, nested ones too), outermost first."""
    return [layer for layer in all_layers(model) if isinstance(layer, ReversibleSequence)]


@contextlib.contextmanager
def plain_autodiff(model):
    """Runs (and traces) the model's memory-efficient stacks as plain autodiff; restores them after.

    The flag is read when a stack is called, so a function traced inside
    keeps plain autodiff. The outputs are the same map either way and the
    gradients equal up to rounding (the engine's tests); what changes is what
    a training step keeps (every activation) and costs (no rebuilding).
    """
    stacks = [s for s in reversible_layers(model) if s.memory_efficient]
    for stack in stacks:
        stack.memory_efficient = False
    try:
        yield model
    finally:
        for stack in stacks:
            stack.memory_efficient = True
