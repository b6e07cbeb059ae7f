"""Exact OR-Tools solvers (numpy in, numbers out), with proven bounds on time-out."""

from .joint import JointResult, joint_miou_min
from .knapsack import knapsack_max

__all__ = ["JointResult", "joint_miou_min", "knapsack_max"]
