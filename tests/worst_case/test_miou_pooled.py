"""The pooled (micro) mIoU budget split: its class minimum, its weak duality, its place between the bounds."""

import itertools

import brute_force
import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lipcert import CertifiedMetric
from lipcert.worst_case.evaluate import evaluate_iou
from lipcert.worst_case.miou_pooled import ClassLists, canonical_rank, class_lists, class_minimum, dual_bound
from lipcert.worst_case.unit import budgets_of


def _prefixes(costs):
    return np.concatenate([[0.0], np.cumsum(np.sort(costs))])


@given(st.integers(0, 2**31 - 1))
def test_class_minimum_equals_enumeration_over_every_prefix_choice(seed):
    rng = np.random.default_rng(seed)
    n_images = int(rng.integers(1, 4))
    rem = [np.sort(rng.uniform(0.0, 0.6, int(rng.integers(0, 3)))) for _ in range(n_images)]
    add = [np.sort(rng.uniform(0.0, 0.6, int(rng.integers(0, 3)))) for _ in range(n_images)]
    tp = sum(r.size for r in rem) + int(rng.integers(0, 2))
    union = tp + int(rng.integers(0 if tp else 1, 3))
    lam = rng.choice([0.0, 0.01, 0.3, 1.0, 5.0], n_images)
    if rng.integers(2):
        lam[:] = lam[0]  # equal prices: the presorted path
    theta = float(rng.choice([0.5, rng.uniform(0.05, 0.95)]))
    lists = ClassLists(
        np.concatenate(rem), np.repeat(np.arange(n_images), [r.size for r in rem]),
        np.concatenate(add), np.repeat(np.arange(n_images), [a.size for a in add]), tp, union,
    )  # fmt: skip
    got, spend = class_minimum(lists, lam, theta)
    best = np.inf
    for a in itertools.product(*[range(r.size + 1) for r in rem]):
        for f in itertools.product(*[range(x.size + 1) for x in add]):
            cost = [2 * theta * _prefixes(rem[i])[a[i]] + 2 * (1 - theta) * _prefixes(add[i])[f[i]]
                    for i in range(n_images)]  # fmt: skip
            value = (tp - sum(a)) / (union + sum(f)) + float(np.dot(lam, cost))
            best = min(best, value)
    assert got <= best and got >= best - 1e-9
    assert spend.shape == (n_images,) and (spend >= 0).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_pooled_split_lies_between_the_mean_of_classes_and_the_brute_force_optimum(seed):
    rng = np.random.default_rng(seed)
    logits, target = brute_force.tiny_dataset(rng, 2, 3, 3)
    eps = [0.0, 0.5, 1.0, 2.0]
    metric = CertifiedMetric("miou", eps, lipschitz=1.0, average="micro")
    metric.update(torch.from_numpy(logits), torch.from_numpy(target))
    cert = metric.compute()
    mean_of_classes = cert.extras["mean_of_classes"]
    for j, e in enumerate(eps):
        exact = brute_force.pooled_miou(logits, target, e, 1.0)
        assert mean_of_classes[j] <= cert.worst[j] <= exact + 1e-12
    assert cert.worst[0] == cert.clean


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_every_price_vector_gives_a_lower_bound(seed):
    """Weak duality on its own, without the price search: any prices >= 0 give a sound bound."""
    rng = np.random.default_rng(seed)
    logits, target = brute_force.tiny_dataset(rng, 3, 2, 3)
    e = float(rng.choice([0.5, 1.0, 1.5]))
    problem, *_ = evaluate_iou(torch.from_numpy(logits), torch.from_numpy(target), np.array([e]), "miou", 1.0,
                               None, per_image=False)  # fmt: skip
    lens = (np.diff(problem.tp_offsets), np.diff(problem.fp_offsets))
    tp_lists = (problem.tp_costs, problem.tp_prefix, lens[0])
    fp_lists = (problem.fp_costs, problem.fp_prefix, lens[1])
    tp, union = problem.tp0.reshape(3, 3).sum(0), problem.union0.reshape(3, 3).sum(0)
    rank = canonical_rank(tp_lists, fp_lists, 3)
    per_class = class_lists(tp_lists, fp_lists, tp, union, 3, float(budgets_of(np.array([e]))[0]), rank)
    exact = brute_force.pooled_miou(logits, target, e, 1.0) * len(per_class)
    absent = int((union == 0).sum())
    for _ in range(5):
        theta = float(rng.uniform(0.05, 0.95))
        bound, grad = dual_bound(per_class, rng.exponential(rng.choice([0.01, 1.0, 30.0]), 3), theta)
        assert bound <= exact + 1e-12 or absent  # an absent class could only lower the pooled mean
        assert grad.shape == (3,)


def _three_pixel_images(n_images, m=2.0):
    logits = np.zeros((n_images, 3, 1, 3))
    for p in range(3):
        logits[:, p, 0, p] = m  # pixel p predicts class p with margin m to both others
    return logits, np.tile(np.array([[[0, 1, 2]]]), (n_images, 1, 1)), m / np.sqrt(2.0)


def test_pooled_split_is_strictly_tighter_than_the_mean_of_classes():
    logits, target, e = _three_pixel_images(2)  # each image: one flip exactly
    metric = CertifiedMetric("miou", [e], lipschitz=1.0, average="micro")
    metric.update(torch.from_numpy(logits), torch.from_numpy(target))
    cert = metric.compute()
    assert cert.extras["mean_of_classes"][0] == 0.0  # each class alone loses both its pixels
    exact = brute_force.pooled_miou(logits, target, e, 1.0)
    # the split charges at most two classes per image: at best two classes lose both TPs -> 1/3
    assert 1 / 3 - 1e-6 <= cert.worst[0] <= exact  # the price search reaches the dual optimum 1/3
    assert "Lagrangian" in cert.solver and str(cert.status) == "bound"


def test_pooled_split_does_not_depend_on_image_order_or_batching():
    rng = np.random.default_rng(3)
    logits, target = brute_force.tiny_dataset(rng, 6, 4, 3)
    logits = np.concatenate([logits, logits[:2]])  # identical images too
    target = np.concatenate([target, target[:2]])
    eps = [0.3, 0.8]
    results = []
    for order, batch in ((np.arange(8), 8), (rng.permutation(8), 3), (rng.permutation(8), 1)):
        metric = CertifiedMetric("miou", eps, lipschitz=1.0, average="micro")
        for lo in range(0, 8, batch):
            idx = order[lo : lo + batch]
            metric.update(torch.from_numpy(logits[idx]), torch.from_numpy(target[idx]))
        results.append(metric.compute().worst)
    assert all(np.array_equal(results[0], r) for r in results[1:])


def test_absent_classes_reachable_by_a_false_positive_count_in_the_mean():
    # class 2 is in no ground truth and no prediction; one cheap false positive makes it defined (IoU 0)
    logits = np.array([[[[3.0, 3.0]], [[0.0, 0.0]], [[2.9, -5.0]]]])
    target = np.array([[[0, 1]]])
    metric = CertifiedMetric("miou", [0.1], lipschitz=1.0, average="micro")
    metric.update(torch.from_numpy(logits), torch.from_numpy(target))
    cert = metric.compute()
    exact = brute_force.pooled_miou(logits, target, 0.1, 1.0)
    assert cert.extras["mean_of_classes"][0] <= cert.worst[0] <= exact + 1e-12


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e40, 1e40, allow_nan=False), min_size=12, max_size=12),
    st.sampled_from([1e-100, 1e-30, 0.3, 1e30, 1e100]),
    st.sampled_from([1e-40, 1e-12, 1.0, 1e12, 1e40]),
)
def test_the_ends_of_float64_give_a_bound_between_the_mean_of_classes_and_the_clean_value(values, e, L):
    logits = np.array(values, dtype=np.float64).reshape(2, 3, 1, 2)  # two images, three classes
    target = np.array([[[0, 1]], [[2, 2]]])
    metric = CertifiedMetric("miou", [0.0, e], lipschitz=L, average="micro")
    metric.update(torch.from_numpy(logits), torch.from_numpy(target))
    cert = metric.compute()
    floor = cert.extras["mean_of_classes"]
    assert np.all(np.isfinite(cert.worst)) and np.all(floor <= cert.worst) and np.all(cert.worst <= cert.clean)
    if np.all(np.diff(np.sort(logits, axis=1), axis=1)[:, -1] > 0):  # no tie for the top class: eps 0 is clean
        assert cert.worst[0] == cert.clean
