"""Attacks that audit certificates: APGD (l2 / linf) with SEA's losses, the SEA ensemble, a margin attack.

Also the relaxed witness: a logit map within the budget, not an attack on the network.
"""

from .apgd import APGD, check_within, project
from .losses import balanced_masked_ce, class_weights_from_labels, js_divergence, masked_ce, pixel_accuracy
from .margin import MarginAttack
from .relaxed import relaxed_miou_witness
from .sea import SEA, confusions_of, worst_case_miou

__all__ = [
    "APGD",
    "SEA",
    "MarginAttack",
    "balanced_masked_ce",
    "check_within",
    "class_weights_from_labels",
    "confusions_of",
    "js_divergence",
    "masked_ce",
    "pixel_accuracy",
    "project",
    "relaxed_miou_witness",
    "worst_case_miou",
]
