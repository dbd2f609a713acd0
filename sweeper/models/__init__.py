"""Networks: built-in families (registered against catalogue.MODELS) and the user's own, through `create_model`."""

from sweeper.models.activations import activation_factory, make_activation, swap_relus
from sweeper.models.registry import REGISTERED, count_params, create_model, first_conv, register_model

# Imported for their @register_model side effect.
from sweeper.models import cnn, densenet, fast, resnet, vgg  # noqa: E402,F401  isort: skip

__all__ = [
    "REGISTERED",
    "activation_factory",
    "count_params",
    "create_model",
    "first_conv",
    "make_activation",
    "register_model",
    "swap_relus",
]
