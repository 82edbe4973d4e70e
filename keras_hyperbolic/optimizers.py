"""The package's optimizers: `RoutedOptimizer` and `CurvatureCappedSGD`.

`RoutedOptimizer`: one optimizer for most weights, others for the weights named in its routes.

A model that wants a different update rule for some of its weights (the
hyperbolic VAE trains its projection `P` by plain SGD with its own step size,
as the paper does, while the network gets Adam) keeps Keras's own
`train_step`: the routing lives in the optimizer, so Keras still scales the
loss for replicas, all-reduces gradients (each inner optimizer does, as usual)
and handles loss-scale overflow (`LossScaleOptimizer` wraps this one and skips
the whole step when any gradient overflowed).

`CurvatureCappedSGD`: plain SGD that keeps each variable's last update and caps
its step at a curvature the model measures along it (the VAE's P).
"""

import keras
from keras.saving import deserialize_keras_object, serialize_keras_object

from keras_hyperbolic.validation import invalid


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class RoutedOptimizer(keras.optimizers.Optimizer):
    """Routes each variable to an optimizer chosen by the end of its path.

    A variable whose `path` ends with a key of `routes` is updated by that
    key's optimizer (the first matching key); every other variable by
    `optimizer`. `iterations` and `learning_rate` are `optimizer`'s, so
    callbacks that read or change the learning rate act on the main optimizer.

    Args:
        optimizer: the optimizer of the unrouted variables (instance or
            identifier such as "adam").
        routes: dict `{path_suffix: optimizer}`, e.g.
            `{"projection/kernel": keras.optimizers.SGD(5e-3)}`.
        name: optimizer name.

    Raises:
        ValueError: empty `routes`, a suffix that is not a non-empty string.

    Example:

    >>> optimizer = RoutedOptimizer("adam", {"projection/kernel": keras.optimizers.SGD(5e-3)})
    >>> model.compile(optimizer=optimizer)
    """

    def __init__(self, optimizer, routes, name=None):
        super().__init__(learning_rate=0.0, name=name or "routed_optimizer")
        if not isinstance(routes, dict) or not routes:
            raise invalid("routes", routes, "a non-empty dict {path_suffix: optimizer}")
        for suffix in routes:
            if not isinstance(suffix, str) or not suffix:
                raise invalid("routes", routes, "non-empty strings (variable path suffixes) as keys")
        self.optimizer = keras.optimizers.get(optimizer)
        self.routes = {suffix: keras.optimizers.get(inner) for suffix, inner in routes.items()}

    def _optimizers(self):
        return [self.optimizer] + list(self.routes.values())

    def _split(self, variables, values=None):
        """`values` (default: the variables) grouped per optimizer, in `_optimizers()` order."""
        values = variables if values is None else values
        groups = [([], []) for _ in self._optimizers()]
        suffixes = list(self.routes)
        for variable, value in zip(variables, values):
            index = next(
                (i + 1 for i, suffix in enumerate(suffixes) if variable.path.endswith(suffix)), 0
            )
            groups[index][0].append(variable)
            groups[index][1].append(value)
        return groups

    def build(self, var_list):
        for inner, (variables, _) in zip(self._optimizers(), self._split(var_list)):
            if variables:
                inner.build(variables)
        super().build(var_list)

    @property
    def variables(self):
        return self._variables + [v for inner in self._optimizers() for v in inner.variables]

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            if trainable_variables is None:
                raise ValueError(
                    "Invalid value for argument `trainable_variables`: the optimizer is not "
                    "built yet, so the variables must be given. Received: trainable_variables=None"
                )
            self.build(list(trainable_variables))
            self.built = True
        variables = self._trainable_variables if trainable_variables is None else trainable_variables
        for inner, (inner_variables, inner_grads) in zip(
            self._optimizers(), self._split(list(variables), list(grads))
        ):
            if inner_variables:
                inner.apply(inner_grads, inner_variables)

    @property
    def learning_rate(self):
        return self.optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.optimizer.iterations

    def finalize_variable_values(self, var_list):
        for inner, (variables, _) in zip(self._optimizers(), self._split(var_list)):
            if variables:
                inner.finalize_variable_values(variables)

    def get_config(self):
        return {
            "name": self.name,
            "optimizer": serialize_keras_object(self.optimizer),
            "routes": {suffix: serialize_keras_object(inner) for suffix, inner in self.routes.items()},
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        optimizer = deserialize_keras_object(config.pop("optimizer"), custom_objects=custom_objects)
        routes = {
            suffix: deserialize_keras_object(inner, custom_objects=custom_objects)
            for suffix, inner in config.pop("routes").items()
        }
        return cls(optimizer, routes, **config)


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class CurvatureCappedSGD(keras.optimizers.SGD):
    """Plain SGD (no momentum) whose step is cut where it would be unstable.

    Keeps, per variable, its last update (`last_step(variable)`, zeros before
    the first) and a curvature estimate `c` (`curvature(variable)`, 0: none)
    that the model writes, measured along that last step. The step is then
    `-min(learning_rate, step_limit / c) * gradient`: plain gradient descent
    along a direction of curvature `c` is stable below `2 / c`, so
    `step_limit < 2` keeps a margin. `HyperbolicVAE` routes its projection `P`
    here and measures `c` on each batch.

    Args:
        learning_rate: the step size (the largest one).
        step_limit: the largest `step * c`, in (0, 2).
        **kwargs: `keras.optimizers.SGD` arguments other than `momentum` and
            `nesterov`.

    Raises:
        ValueError: momentum asked for, or `step_limit` outside (0, 2).

    Example:

    >>> sgd = CurvatureCappedSGD(5e-3)
    >>> sgd.apply([grad], [variable])
    >>> sgd.last_step(variable)            # -5e-3 * grad
    >>> sgd.curvature(variable).assign(1e4)
    >>> sgd.apply([grad], [variable])      # -1.5e-4 * grad
    """

    def __init__(self, learning_rate=0.01, step_limit=1.5, name="curvature_capped_sgd", **kwargs):
        for key in ("momentum", "nesterov"):
            if kwargs.pop(key, 0):
                raise invalid(key, kwargs.get(key, True), "no momentum: plain SGD")
        if isinstance(step_limit, bool) or not isinstance(step_limit, (int, float)) or not (
            0 < step_limit < 2
        ):
            raise invalid("step_limit", step_limit, "a number in (0, 2)")
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.step_limit = float(step_limit)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._last_steps, self._curvatures = [], []
        for variable in variables:
            prefix = variable.path.replace("/", "_")
            self._last_steps.append(self._state(f"{prefix}_last_step", variable.shape, variable.dtype))
            self._curvatures.append(self._state(f"{prefix}_curvature", (), "float32"))

    def _state(self, name, shape, dtype):
        # autocast=False: read in full precision inside a mixed-precision `call`;
        # only_first_replica: a model may write it in each replica of a step.
        state = keras.Variable(
            initializer="zeros", shape=shape, dtype=dtype, trainable=False, autocast=False,
            aggregation="only_first_replica", name=name,
        )
        self._track_variable(state)
        return state

    def capped_learning_rate(self, variable, learning_rate=None):
        """`min(learning_rate, step_limit / c)` for `variable` (the rate if `c` is 0)."""
        lr = keras.ops.cast(self.learning_rate if learning_rate is None else learning_rate,
                            "float32")
        c = keras.ops.convert_to_tensor(self.curvature(variable))
        cap = keras.ops.divide(self.step_limit, keras.ops.maximum(c, 1e-30))
        return keras.ops.where(c > 0, keras.ops.minimum(lr, cap), lr)

    def update_step(self, gradient, variable, learning_rate):
        lr = keras.ops.cast(self.capped_learning_rate(variable, learning_rate), variable.dtype)
        step = keras.ops.multiply(keras.ops.cast(gradient, variable.dtype), -lr)
        self.assign(self.last_step(variable), step)
        self.assign_add(variable, step)

    def last_step(self, variable):
        """The last update of `variable` (a variable of this optimizer)."""
        return self._last_steps[self._get_variable_index(variable)]

    def curvature(self, variable):
        """The curvature estimate along `variable`'s steps (a scalar variable; 0: none)."""
        return self._curvatures[self._get_variable_index(variable)]

    def get_config(self):
        config = super().get_config()
        config.pop("momentum", None)
        config.pop("nesterov", None)
        config["step_limit"] = self.step_limit
        return config
