"""Guaranteed Lipschitz upper bounds (from the weights that run) and empirical lower bounds."""

from .bound import lipschitz_bound
from .estimate import lipschitz_lower_bound
from .export import export_plain
from .layer_bounds import layer_bounds, register_layer_bound, unregister_layer_bound

__all__ = [
    "export_plain",
    "layer_bounds",
    "lipschitz_bound",
    "lipschitz_lower_bound",
    "register_layer_bound",
    "unregister_layer_bound",
]
