"""Model registry and families; importing this package registers every model."""

from sweeper.models.activations import ACTIVATIONS, make_activation, swap_relus
from sweeper.models.registry import MODELS, count_params, create_model, first_conv, register_model

# Imported for their @register_model side effect.
from sweeper.models import cnn, densenet, fast, resnet, vgg  # noqa: E402,F401  isort: skip

__all__ = [
    "ACTIVATIONS",
    "MODELS",
    "count_params",
    "create_model",
    "first_conv",
    "make_activation",
    "register_model",
    "swap_relus",
]
