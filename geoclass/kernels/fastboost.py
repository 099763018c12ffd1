"""Fast inference for gradient-boosted trees (XGBoost, LightGBM): numba kernels on flat nodes.

`compile_boosting(estimator)` turns a fitted `xgboost.XGBClassifier`,
`geoclass.models.boosting.XGBoostClassifier` (its label-encoding wrapper) or
`lightgbm.LGBMClassifier` (alone, or last step of a Pipeline whose other steps are
StandardScalers, folded into the thresholds as in fastforest) into flat arrays, once per model;
`predict_proba(compiled, X, n_threads)` then gives the library's `predict_proba` on float32
pixels, in the order of the estimator's `classes_`, within float32 rounding. Objectives:
XGBoost `binary:logistic`, `multi:softprob`, `multi:softmax`; LightGBM `binary`, `multiclass`.
Anything else (other objectives or boosters, categorical splits, linear trees, vector leaves,
a `missing` value other than NaN, random-forest mode...) gives None: the caller then uses the
library's `predict_proba`.

Semantics reproduced, per library (the models are read from their JSON dumps):
- XGBoost compares float32 `x < threshold` (float32 thresholds), goes left if so, and sends NaN
  to the node's default child; leaves are float32 and the margins are float32 sums, in tree
  order, starting from the base margin (`base_score`, per class in XGBoost >= 3, through the
  objective's link: logit for binary:logistic). They are summed here in float32 in the same
  order, so the margins are XGBoost's bit for bit; the softmax / sigmoid is then computed in
  float64 (XGBoost: float32), hence a difference of a few float32 ulps on the probabilities.
  Trees: those of the first `best_iteration + 1` rounds after early stopping, else all; tree i
  adds to class `tree_info[i]` (i % n_classes for multi-class).
- LightGBM compares `double(x) <= threshold` (float64 thresholds), after mapping |x| <= 1e-35
  to 0 (its dense-row reader drops such values); a NaN is treated as 0 unless the node's
  `missing_type` is NaN, and NaN (missing_type NaN) or zero (missing_type Zero) go to the
  default child. Leaves are float64 (shrinkage and the initial score are already in them),
  summed in float64 in tree order (tree i for class i % num_tree_per_iteration), then softmax
  or sigmoid(sigmoid * score) in float64, as LightGBM does. Trees: the first `best_iteration`
  rounds if set, else all.

Layout: nodes as in fastforest (8 bytes: an int32 key, left child | NaN-goes-right bit |
feature, and a float32 threshold; go right iff x > threshold, or x is NaN and the bit is set),
so that fastforest's SIMD step and StandardScaler folding serve unchanged. Every threshold is
rewritten as the float32 c such that "left" is exactly "x <= c" for every float32 x that is not
NaN: for XGBoost the float32 just below its threshold, for LightGBM the largest float32 <= its
float64 threshold (moved past +-1e-35 where needed). LightGBM's zero-as-missing nodes whose
default child is not the one 0 compares to need one more test (x in [-1e-35, 1e-35] flips the
direction): they are kept in `flips` (tested by the exit-leaf kernel; of the walking kernels,
by the scalar one only).

Kernels. Pixels go in blocks (numba prange over blocks, `n_threads` per call as fastforest),
trees one after the other over a block (tree-major), each tree adding its leaf value to its
class's margin (per pixel: base margin, then the trees in order, as the libraries); then
softmax / sigmoid per pixel.
- "exit" kernel, when every tree has at most 64 leaves (XGBoost max_depth <= 6, LightGBM
  num_leaves <= 64: the defaults): the exit leaf is found without walking the tree, as
  QuickScorer (Lucchese et al., SIGIR 2015) does: leaves are numbered left to right, each pixel
  starts with all of them, and every internal node whose test sends the pixel right removes
  the leaves of its left subtree; the exit leaf is the leftmost leaf left (lowest set bit).
  Every internal node is tested on every pixel, but as a loop over the block's pixels on one
  feature row (the block is copied feature-major, 512 pixels), which LLVM vectorises (compare
  and mask 8 pixels at a time with AVX2, no gathers); masks are 32-bit for trees of at most 32
  leaves, 64-bit otherwise. The exit leaves' values are then added 16 pixels at a time
  (`_exit_add16`: vector count of trailing zeros, gather, add), which LLVM does not vectorise
  from the scalar loop: on Zen 3 that loop took two thirds of the kernel's time, and the
  kernel went from 530 to 800 kpx/s (default model on the OTB anchor stack, two
  single-thread calls side by side).
- Trees with more leaves are walked as in fastforest: 32 pixels in lockstep with AVX-512/AVX2
  gathers (fastforest's `_step16`, blocks of 512 pixels), or by a portable scalar kernel
  (used if the SIMD one does not compile or disagrees with it on the first call, for models
  with `flips`, or if GEOCLASS_FASTFOREST_KERNEL=scalar, which also turns the exit kernel off).
All kernels give the same margins, bit for bit.

Measured on the 2-core dev machine (AMD EPYC Zen 3, AVX2 whose gathers LLVM scalarises there),
busy with other jobs (so only ratios within one run count), 156 features, 10 classes, 1 thread,
kpx/s (benchmarks/bench_boost.py, 200 k pixels, models trained on 2000 samples; figures and
the alternatives tried in benchmarks/RESULTS.md, issue 18): XGBoost 50 rounds of depth 6: the
library 72, this 186 (2.6x); 200 rounds: 13 and 78 (5.8x); LightGBM 200 rounds of 31 leaves:
5 and 111 (21x). On XGBoost 50 rounds the lockstep walk did 81-90, the exit-leaf kernel with
64-bit masks only 180, with 32-bit masks where possible 212-224.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

from geoclass.kernels import fastforest as ff
from geoclass.kernels.threads import ByThreads, numba_threads

log = logging.getLogger(__name__)

FORMAT = 1  # of CompiledBoosting: bump when its fields or encoding change (saved models)
BLOCK = ff.BLOCK  # pixels per parallel task of the walking kernels
EXIT_BLOCK = 512  # pixels per parallel task of the exit-leaf kernel
EXIT_LEAVES = 64  # most leaves per tree for the exit-leaf kernel
VECTORS = ff.VECTORS
SCALAR_LANES = ff.SCALAR_LANES

SOFTMAX, SIGMOID, MARGIN = 0, 1, 2  # output of the kernels
LGBM_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float, compared in double)
NAN_RIGHT, FLIP = 1, 2  # flags of the exit-leaf kernel's nodes
ZERO32 = np.float32(LGBM_ZERO)
ONES32, ONES64 = np.uint32(0xFFFFFFFF), np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True, eq=False)
class CompiledBoosting:
    """A boosted model as flat arrays (see the module docstring)."""

    nodes: np.ndarray  # (n_nodes, 2) int32: key, float32 threshold bits (fastforest encoding)
    roots: np.ndarray  # (n_trees,) int64: index of each tree's root in `nodes`
    leaf_base: np.ndarray  # (n_trees,) int64: first row of each tree in `values`
    values: np.ndarray  # (n_leaves,) float32 (XGBoost) or float64 (LightGBM): leaf outputs
    tree_class: np.ndarray  # (n_trees,) int64: the margin each tree adds to
    base: np.ndarray  # (n_margins,) same dtype as values: initial margins
    flips: np.ndarray  # (n_nodes,) bool: x in [-1e-35, 1e-35] flips the direction (LightGBM)
    shift: int  # key >> shift: left child (internal node) or ~leaf row (leaf)
    link: int  # SOFTMAX (one margin per class) or SIGMOID (binary: one margin)
    scale: float  # sigmoid(scale * margin) (LightGBM's `sigmoid` parameter; 1 for XGBoost)
    classes_: np.ndarray
    n_features: int
    library: str  # "xgboost" or "lightgbm"
    exits: ExitTables | None = None  # for the exit-leaf kernel (None: a tree has > 64 leaves)

    @property
    def n_classes(self) -> int:
        """Number of classes, i.e. of probability columns."""
        return len(self.classes_)

    @property
    def n_trees(self) -> int:
        """Number of trees."""
        return len(self.roots)

    @property
    def n_margins(self) -> int:
        """Number of raw outputs (1 for a binary model)."""
        return len(self.base)


@dataclass(frozen=True, eq=False)
class ExitTables:
    """The trees for the exit-leaf kernel: internal nodes, then leaves left to right."""

    feature: np.ndarray  # (n_internal,) int32
    threshold: np.ndarray  # (n_internal,) float32: right iff x > threshold (or NaN, flags)
    flags: np.ndarray  # (n_internal,) int32: NAN_RIGHT | FLIP (x in [-1e-35, 1e-35])
    keep: np.ndarray  # (n_internal,) uint64: leaves kept when going right (not the left subtree's)
    keep32: np.ndarray  # (n_internal,) uint32: the same, for trees of at most 32 leaves
    node_base: np.ndarray  # (n_trees + 1,) int64: each tree's internal nodes
    leaf_base: np.ndarray  # (n_trees + 1,) int64: each tree's leaves in `values`
    values: np.ndarray  # (n_leaves,) leaf outputs, left to right within each tree


@dataclass
class _Trees:
    """A library's model read from its dump, before encoding: per tree, node arrays (left and
    right children, -1 for a leaf; feature; float32 threshold, left iff x <= it; NaN goes
    right; zero flips the direction; leaf value)."""

    trees: list[tuple[np.ndarray, ...]]
    tree_class: np.ndarray
    base: np.ndarray
    link: int
    scale: float
    n_features: int
    dtype: type
    library: str


# --------------------------------------------------------------------------------------------
# compile


def compile_boosting(estimator) -> CompiledBoosting | None:
    """Compile a fitted XGBoost / LightGBM classifier (or a Pipeline of StandardScalers then
    one). Returns None for anything else: the caller then uses the estimator's own
    `predict_proba`."""
    steps = ff._split_pipeline(estimator)
    if steps is None:
        return None
    scalers, model = steps
    classes = getattr(model, "classes_", None)
    model = _library_model(model)
    if model is None or classes is None:
        return None
    module = type(model).__module__.split(".")[0]
    try:
        parts = (_read_xgboost(model) if module == "xgboost"
                 else _read_lightgbm(model) if module == "lightgbm" else None)
    except (KeyError, ValueError, TypeError, IndexError):  # a dump this code does not know
        log.warning("fastboost: cannot read %s, using its predict_proba", type(model).__name__,
                    exc_info=True)
        return None
    n_classes = len(classes)
    if (parts is None or not parts.trees or n_classes < 2
            or len(parts.base) != (1 if parts.link == SIGMOID else n_classes)
            or parts.n_features != getattr(model, "n_features_in_", parts.n_features)):
        return None
    arrays = _encode_trees(parts.trees, parts.n_features)
    if arrays is None:
        return None
    nodes, flips, roots, leaf_base, values, shift = arrays
    if scalers:
        if flips.any():  # the zero test is on the scaled value: cannot be folded
            return None
        ff._fold_scalers(scalers, nodes, shift, parts.n_features)
    values = values.astype(parts.dtype)
    return CompiledBoosting(
        nodes, roots, leaf_base, values, parts.tree_class.astype(np.int64),
        parts.base.astype(parts.dtype), flips, shift, parts.link, parts.scale,
        np.asarray(classes), parts.n_features, parts.library,
        _exit_tables(nodes, flips, roots, leaf_base, values, shift))


def _library_model(model):
    """The fitted XGBClassifier / LGBMClassifier itself (unwrapping geoclass's
    label-encoding XGBoost wrapper), or None."""
    module = type(model).__module__
    if module.startswith("geoclass.models.boosting"):
        model = getattr(model, "model_", None)
        module = type(model).__module__
    if module.startswith("xgboost"):
        import xgboost

        return model if isinstance(model, xgboost.XGBClassifier) else None
    if module.startswith("lightgbm"):
        import lightgbm

        return model if isinstance(model, lightgbm.LGBMClassifier) else None
    return None


def _read_xgboost(model) -> _Trees | None:
    """The trees, base margins and link of a fitted XGBClassifier."""
    try:
        booster = model.get_booster()
    except Exception:  # not fitted
        return None
    missing = getattr(model, "missing", np.nan)
    if missing is not None and not (isinstance(missing, float) and np.isnan(missing)):
        return None  # another value than NaN stands for missing data
    learner = json.loads(booster.save_raw("json"))["learner"]
    objective = learner["objective"]["name"]
    gbm = learner["gradient_booster"]
    param = learner["learner_model_param"]
    if gbm["name"] != "gbtree" or int(param.get("num_target", 1)) != 1:
        return None
    if objective == "binary:logistic":
        link, n_margins = SIGMOID, 1
    elif objective in ("multi:softprob", "multi:softmax"):
        link, n_margins = SOFTMAX, int(param["num_class"])
    else:
        return None
    base = _xgboost_base_margin(param["base_score"], objective, n_margins)
    if base is None:
        return None
    forest = gbm["model"]
    trees, tree_info = forest["trees"], np.asarray(forest["tree_info"], np.int64)
    n_trees = _xgboost_tree_count(booster, forest, n_margins)
    trees, tree_info = trees[:n_trees], tree_info[:n_trees]
    if len(trees) != n_trees or (tree_info >= n_margins).any() or (tree_info < 0).any():
        return None
    parsed = [_xgboost_tree(tree) for tree in trees]
    if any(tree is None for tree in parsed):
        return None
    return _Trees(parsed, tree_info, base, link, 1.0, int(param["num_feature"]), np.float32,
                  "xgboost")


def _xgboost_base_margin(text: str, objective: str, n_margins: int) -> np.ndarray | None:
    """The initial float32 margins: `base_score` ("0.5", or "[a,b,...]" per class in XGBoost
    >= 3) through the objective's ProbToMargin (float32 arithmetic, as XGBoost)."""
    scores = np.array([float(v) for v in text.strip("[]").split(",")], np.float64)
    base = scores.astype(np.float32)
    if len(base) == 1:
        base = np.repeat(base, n_margins)
    if len(base) != n_margins:
        return None
    if objective == "binary:logistic":  # -logf(1 / p - 1), in float32
        one = np.float32(1.0)
        with np.errstate(divide="ignore"):  # logf correctly rounded (numpy's float32 log is not)
            base = -np.log((one / base - one).astype(np.float64))
    return base.astype(np.float32)


def _xgboost_tree_count(booster, forest: dict, n_margins: int) -> int:
    """Number of trees predict_proba uses: those of the first best_iteration + 1 rounds when
    early stopping set it, else all."""
    trees = len(forest["trees"])
    best = booster.attr("best_iteration")
    if best is None:
        return trees
    rounds = int(best) + 1
    indptr = forest.get("iteration_indptr")
    if indptr:  # XGBoost >= 2
        return int(indptr[min(rounds, len(indptr) - 1)])
    per_round = n_margins * int(forest["gbtree_model_param"].get("num_parallel_tree", 1))
    return min(trees, rounds * per_round)


def _xgboost_tree(tree: dict):
    """Node arrays of one XGBoost tree (JSON model), or None for unsupported splits."""
    size_leaf = int(tree["tree_param"].get("size_leaf_vector", "1"))
    if size_leaf > 1 or any(tree.get("split_type", [])) or tree.get("categories_nodes"):
        return None
    left = np.asarray(tree["left_children"], np.int64)
    right = np.asarray(tree["right_children"], np.int64)
    feature = np.asarray(tree["split_indices"], np.int64)
    condition = np.asarray(tree["split_conditions"], np.float64).astype(np.float32)
    leaf = left < 0
    # left iff x < t, i.e. iff x <= the float32 just below t
    threshold = np.where(leaf, np.float32(0),
                         np.nextafter(condition, np.float32(-np.inf))).astype(np.float32)
    nan_right = np.asarray(tree["default_left"], np.int64) == 0
    flips = np.zeros(len(left), bool)
    return left, right, np.where(leaf, 0, feature), threshold, nan_right, flips, condition


def _read_lightgbm(model) -> _Trees | None:
    """The trees and link of a fitted LGBMClassifier."""
    booster = getattr(model, "_Booster", None)
    if booster is None or callable(getattr(model, "_objective", None)):
        return None
    rounds = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
    dump = booster.dump_model(num_iteration=-1)
    name, *options = dump["objective"].split()
    options = dict(option.split(":", 1) for option in options if ":" in option)
    per_round = int(dump["num_tree_per_iteration"])
    if name == "binary" and per_round == 1:
        link, scale = SIGMOID, float(options.get("sigmoid", 1.0))
    elif name == "multiclass" and per_round == int(dump["num_class"]):
        link, scale = SOFTMAX, 1.0
    else:
        return None
    if dump.get("average_output"):
        return None
    infos = dump["tree_info"][:rounds * per_round]
    if len(infos) != rounds * per_round:
        return None
    parsed = [_lightgbm_tree(info) for info in infos]
    if any(tree is None for tree in parsed):
        return None
    tree_class = np.arange(len(parsed), dtype=np.int64) % per_round
    return _Trees(parsed, tree_class, np.zeros(per_round), link, scale,
                  int(dump["max_feature_idx"]) + 1, np.float64, "lightgbm")


def _lightgbm_tree(info: dict):
    """Node arrays of one LightGBM tree (dump_model), or None for unsupported splits."""
    if info.get("is_linear") or info.get("num_cat", 0):
        return None
    nodes, stack = [], [(info["tree_structure"], -1, False)]
    left, right = [], []
    while stack:  # depth first, children after their parent
        node, parent, is_right = stack.pop()
        index = len(nodes)
        nodes.append(node)
        left.append(-1)
        right.append(-1)
        if parent >= 0:
            (right if is_right else left)[parent] = index
        if "split_feature" in node:
            if node.get("decision_type") != "<=" or "leaf_coeff" in node:
                return None
            stack.append((node["right_child"], index, True))
            stack.append((node["left_child"], index, False))
        elif "leaf_coeff" in node:
            return None
    inner = np.array(["split_feature" in node for node in nodes], bool)
    value = np.array([0.0 if split else float(node["leaf_value"])
                      for node, split in zip(nodes, inner)], np.float64)
    feature = np.array([node["split_feature"] if split else 0
                        for node, split in zip(nodes, inner)], np.int64)
    splits = [node for node, split in zip(nodes, inner) if split]
    threshold, nan_right, flips = _lightgbm_splits(
        np.array([float(node["threshold"]) for node in splits], np.float64),
        np.array([node["missing_type"] for node in splits], object),
        np.array([bool(node["default_left"]) for node in splits], bool))
    return (np.asarray(left, np.int64), np.asarray(right, np.int64), feature,
            _scatter(inner, threshold, np.float32), _scatter(inner, nan_right, bool),
            _scatter(inner, flips, bool), value)


def _scatter(where: np.ndarray, values: np.ndarray, dtype) -> np.ndarray:
    """Zeros the size of `where`, with `values` where it is True."""
    out = np.zeros(len(where), dtype)
    out[where] = values
    return out


def _lightgbm_splits(threshold: np.ndarray, missing_type: np.ndarray, default_left: np.ndarray):
    """(c, NaN goes right, zero flips) of LightGBM numerical splits `double(x) <= threshold`
    where x in [-1e-35, 1e-35] reads as 0: left iff x <= c for float32 x outside the zero
    range (or in it, where the split does not flip)."""
    unknown = set(missing_type.tolist()) - {"None", "Zero", "NaN"}
    if unknown:
        raise ValueError(f"unknown LightGBM missing_type {sorted(unknown)}")
    zero = np.float32(LGBM_ZERO)
    with np.errstate(over="ignore"):  # thresholds of 1e300 stand for +inf
        c = ff._floor_float32(threshold)
    zero_left = threshold >= 0.0  # where 0 goes, hence the whole zero range
    c = np.where(zero_left, np.maximum(c, zero),
                 np.minimum(c, np.nextafter(-zero, np.float32(-np.inf)))).astype(np.float32)
    # missing_type None: NaN reads as 0; NaN: NaN to the default child; Zero: NaN reads as 0,
    # and 0 is missing, so both go to the default child (a flip where 0 compares the other way)
    nan_right = np.where(missing_type == "None", ~zero_left, ~default_left)
    flips = (missing_type == "Zero") & (default_left != zero_left)
    return c, nan_right, flips


def _encode_trees(trees, n_features: int):
    """(nodes, flips, roots, leaf_base, values, shift) of all trees in fastforest's encoding,
    or None if indices overflow."""
    feature_bits = max(1, (n_features - 1).bit_length())
    shift = feature_bits + 1
    encoded = [_encode_tree(*tree, feature_bits, shift) for tree in trees]
    sizes = np.array([len(keys) for keys, *_ in encoded], np.int64)
    leaves = np.array([len(values) for *_, values in encoded], np.int64)
    if (sizes.max() >= 2 ** (31 - shift) or leaves.max() >= 2 ** (31 - shift)
            or 2 * sizes.sum() >= 2 ** 31 or leaves.sum() >= 2 ** 31):
        return None
    nodes = np.empty((sizes.sum(), 2), np.int32)
    nodes[:, 0] = np.concatenate([keys for keys, *_ in encoded])
    nodes[:, 1] = np.concatenate([thresholds for _, thresholds, *_ in encoded]).view(np.int32)
    flips = np.concatenate([flips for _, _, flips, _ in encoded])
    values = np.concatenate([values for *_, values in encoded])
    return nodes, flips, np.cumsum(sizes) - sizes, np.cumsum(leaves) - leaves, values, shift


def _encode_tree(left, right, feature, threshold, nan_right, flips, value, feature_bits: int,
                 shift: int):
    """One tree in sibling-pair order: keys, float32 thresholds, flips, leaf values."""
    order = _pair_order(left, right)
    position = np.full(len(left), -1, np.int64)
    position[order] = np.arange(len(order))
    is_leaf = left[order] < 0
    leaf_row = np.cumsum(is_leaf) - 1
    inner_key = ((position[np.maximum(left[order], 0)] << shift)
                 | (nan_right[order].astype(np.int64) << feature_bits) | feature[order])
    keys = np.where(is_leaf, ~leaf_row << shift, inner_key)
    thresholds = np.where(is_leaf, np.float32(0), threshold[order]).astype(np.float32)
    return keys, thresholds, flips[order] & ~is_leaf, value[order[is_leaf]]


@njit(cache=True)
def _pair_order(left, right):  # pragma: no cover - compiled
    """Depth-first order of the nodes reachable from the root (node 0), both children of a node
    adjacent, left first (XGBoost may keep deleted nodes: they are left out)."""
    order = np.empty(len(left), np.int64)
    stack = np.empty(len(left), np.int64)
    order[0] = stack[0] = 0
    size = top = 1
    while top > 0:
        top -= 1
        node = stack[top]
        if left[node] >= 0:
            order[size], order[size + 1] = left[node], right[node]
            stack[top], stack[top + 1] = right[node], left[node]
            size += 2
            top += 2
    return order[:size]


def _exit_tables(nodes, flips, roots, leaf_base, values, shift: int) -> ExitTables | None:
    """The exit-leaf kernel's tables, or None if a tree has more than 64 leaves."""
    keys = nodes[:, 0].astype(np.int64)
    sizes = np.diff(np.append(roots, len(keys)))
    if np.diff(np.append(leaf_base, len(values))).max() > EXIT_LEAVES:
        return None
    inner = keys >= 0
    feature = (keys[inner] & ((1 << (shift - 1)) - 1)).astype(np.int32)
    threshold = nodes[inner, 1].view(np.float32).copy()
    flags = (((keys[inner] >> (shift - 1)) & 1) * NAN_RIGHT + flips[inner] * FLIP).astype(np.int32)
    keep, order = _exit_masks(keys, roots, sizes, shift)
    node_base = np.append(0, np.cumsum(np.add.reduceat(inner, roots))).astype(np.int64)
    return ExitTables(feature, threshold, flags, keep, (keep & 0xFFFFFFFF).astype(np.uint32),
                      node_base, np.append(leaf_base, len(values)).astype(np.int64),
                      values[order])


@njit(cache=True)
def _exit_masks(keys, roots, sizes, shift):  # pragma: no cover - compiled
    """(keep mask of each internal node, in node order; the compiled leaf row of each leaf in
    left-to-right order within each tree). Leaves are numbered left to right per tree; an
    internal node keeps, when the pixel goes right, every leaf but its left subtree's."""
    keep = np.empty(np.sum(keys >= 0), np.uint64)
    order = np.empty(np.sum(keys < 0), np.int64)
    first = np.empty(len(keys), np.int64)  # first and last + 1 leaf number under each node
    last = np.empty(len(keys), np.int64)
    stack = np.empty(sizes.max() + 1, np.int64)
    p = q = 0
    for t in range(len(roots)):
        root, end = roots[t], roots[t] + sizes[t]
        stack[0], top, count = root, 1, 0
        while top > 0:  # depth first, left before right: leaves from left to right
            top -= 1
            i = stack[top]
            if keys[i] < 0:
                order[q + count] = q + ~(keys[i] >> shift)
                first[i], last[i] = count, count + 1
                count += 1
            else:
                left = root + (keys[i] >> shift)
                stack[top], stack[top + 1] = left + 1, left
                top += 2
        for i in range(end - 1, root - 1, -1):  # children come after their parent
            if keys[i] >= 0:
                left = root + (keys[i] >> shift)
                first[i], last[i] = first[left], last[left + 1]
        for i in range(root, end):
            if keys[i] >= 0:
                left = root + (keys[i] >> shift)
                removed = np.uint64(0)
                for b in range(first[left], last[left]):
                    removed |= np.uint64(1) << np.uint64(b)
                keep[p] = ~removed
                p += 1
        q += count
    return keep, order


# --------------------------------------------------------------------------------------------
# predict

_KERNEL: list[str] = []  # "simd" or "scalar", chosen on the first call


def predict_proba(compiled: CompiledBoosting, X: np.ndarray, n_threads: int | None = 1
                  ) -> np.ndarray:
    """Class probabilities (n, n_classes) float64 of pixels X (n, n_features), cast to
    float32, in the order of `classes_`, on `n_threads` numba threads (None: numba's current
    setting)."""
    return _run(compiled, X, n_threads, compiled.link)


def predict_margin(compiled: CompiledBoosting, X: np.ndarray, n_threads: int | None = 1
                   ) -> np.ndarray:
    """Raw margins (n, n_margins), in the library's precision (float32 for XGBoost, as its
    `output_margin=True`; float64 for LightGBM, as its `raw_score=True`)."""
    return _run(compiled, X, n_threads, MARGIN).astype(compiled.values.dtype)


def _run(compiled: CompiledBoosting, X, n_threads, link: int) -> np.ndarray:
    pixels = ff._as_pixels(X, compiled.n_features)
    with numba_threads(n_threads):
        return _predict(compiled, pixels, _kernel_name(compiled, pixels), link)


def _predict(compiled: CompiledBoosting, pixels: tuple[np.ndarray, bool], kernel: str,
             link: int) -> np.ndarray:
    """Run one kernel ("simd" or "scalar") on `ff._as_pixels` output."""
    X, transposed = pixels
    n = X.shape[1] if transposed else X.shape[0]
    out = np.empty((n, compiled.n_margins if link == MARGIN else compiled.n_classes),
                   np.float64)
    if n == 0:
        return out
    c = compiled
    if kernel == "exit":
        e = c.exits
        _exit_kernel(e.feature, e.threshold, e.flags, e.keep, e.keep32, e.node_base,
                     e.leaf_base, e.values, c.tree_class, c.base, X, transposed, EXIT_BLOCK,
                     link, c.scale, out)
    elif kernel == "simd" and not c.flips.any():
        _simd_kernel(c.nodes.view(np.int64).ravel(), c.roots, c.leaf_base, c.values,
                     c.tree_class, c.base, c.shift, X, transposed, BLOCK, VECTORS, link,
                     c.scale, out)
    else:
        _scalar_kernel(c.nodes, c.nodes.view(np.float32), c.flips, c.roots, c.leaf_base,
                       c.values, c.tree_class, c.base, c.shift, X, transposed, BLOCK,
                       SCALAR_LANES, link, c.scale, out)
    return out


def _kernel_name(compiled: CompiledBoosting, pixels: tuple[np.ndarray, bool]) -> str:
    """The kernel to use: "exit" when the trees allow it, else the SIMD walk if it compiles
    and matches the scalar one (checked once, on the first call), else "scalar"."""
    if os.environ.get("GEOCLASS_FASTFOREST_KERNEL") == "scalar":
        return "scalar"
    if compiled.exits is not None:
        return "exit"
    if compiled.flips.any():
        return "scalar"
    if not _KERNEL:
        if pixels[0].size == 0:
            return "simd"  # nothing to run: decide on a later call
        _KERNEL.append(_check_simd(compiled, pixels))
    return _KERNEL[0]


def _check_simd(compiled: CompiledBoosting, pixels: tuple[np.ndarray, bool]) -> str:
    """"simd" if the SIMD kernel compiles and matches the scalar one, else "scalar"."""
    X, transposed = pixels
    sample = (np.ascontiguousarray(X[:, :256] if transposed else X[:256]), transposed)
    try:
        same = np.array_equal(_predict(compiled, sample, "simd", MARGIN),
                              _predict(compiled, sample, "scalar", MARGIN))
    except Exception:  # any compile failure: use the portable kernel
        log.warning("fastboost: SIMD kernel unavailable, using the scalar kernel",
                    exc_info=True)
        return "scalar"
    if not same:
        log.warning("fastboost: SIMD kernel disagrees with the scalar kernel; using the latter")
    return "simd" if same else "scalar"


@njit(inline="always")
def _finish(acc, stride, size, start, link, scale, out):  # pragma: no cover - compiled
    """Probabilities (or margins) of the block's pixels from their margins acc[k * stride + j],
    in float64, as LightGBM (softmax: max, exp, sum in order, divide)."""
    n_margins = len(acc) // stride
    for j in range(size):
        if link == SOFTMAX:
            top = np.float64(acc[j])
            for k in range(1, n_margins):
                top = max(top, np.float64(acc[k * stride + j]))
            total = 0.0
            for k in range(n_margins):
                e = np.exp(np.float64(acc[k * stride + j]) - top)
                out[start + j, k] = e
                total += e
            for k in range(n_margins):
                out[start + j, k] /= total
        elif link == SIGMOID:
            p = 1.0 / (1.0 + np.exp(-scale * np.float64(acc[j])))
            out[start + j, 0] = 1.0 - p
            out[start + j, 1] = p
        else:
            for k in range(n_margins):
                out[start + j, k] = acc[k * stride + j]


@njit(parallel=True, nogil=True, cache=True)
def _scalar_kernel(nodes, thresholds, flips, roots, leaf_base, values, tree_class, base, shift,
                   X, transposed, block, lanes, link, scale, out):  # pragma: no cover
    """Margins summed tree after tree (in the dtype of `values`), `lanes` pixels walking a
    tree in lockstep; pixel blocks in parallel."""
    n, n_features = out.shape[0], X.shape[0] if transposed else X.shape[1]
    n_margins, n_trees = len(base), len(roots)
    feature_mask = (1 << (shift - 1)) - 1
    any_flip = flips.any()
    for b in prange((n + block - 1) // block):
        start = b * block
        size = min(n, start + block) - start
        xb = ff._copy_block(X, transposed, start, size)
        acc = np.empty(n_margins * size, values.dtype)
        for k in range(n_margins):
            acc[k * size:(k + 1) * size] = base[k]
        cur = np.empty(lanes, np.int64)
        for t in range(n_trees):
            root, row = roots[t], tree_class[t] * size
            for g in range(0, size, lanes):
                m = min(lanes, size - g)
                cur[:m] = root
                moving = True
                while moving:
                    moving = False
                    for k in range(m):
                        i = cur[k]
                        key = np.int64(nodes[i, 0])
                        x = xb[(g + k) * n_features + (key & feature_mask)]
                        nan_right = ((key >> (shift - 1)) & 1) == 1
                        right = (x > thresholds[i, 1]) | (nan_right & (x != x))
                        if any_flip and flips[i]:
                            right ^= abs(np.float64(x)) <= LGBM_ZERO
                        inner = key >= 0
                        cur[k] = root + (key >> shift) + right if inner else i
                        moving |= inner
                for k in range(m):
                    leaf = leaf_base[t] + ~(np.int64(nodes[cur[k], 0]) >> shift)
                    acc[row + g + k] += values[leaf]
        _finish(acc, size, size, start, link, scale, out)


_scalar_kernel = ByThreads(_scalar_kernel)


# --------------------------------------------------------------------------------------------
# exit-leaf kernel: every internal node tested on a block's pixels, feature row by feature row


@njit(parallel=True, nogil=True, cache=True)
def _exit_kernel(feature, threshold, flags, keep, keep32, node_base, leaf_base, values,
                 tree_class, base, X, transposed, block, link, scale, out):  # pragma: no cover
    """Margins summed tree after tree (in the dtype of `values`), each tree's exit leaf found
    from the leaves its nodes leave (see the module docstring); pixel blocks in parallel."""
    n, n_features = out.shape[0], X.shape[0] if transposed else X.shape[1]
    n_margins, n_trees = len(base), len(tree_class)
    for b in prange((n + block - 1) // block):
        start = b * block
        size = min(n, start + block) - start
        xt = np.empty((n_features, size), np.float32)  # feature-major
        if transposed:
            for f in range(n_features):
                for j in range(size):
                    xt[f, j] = X[f, start + j]
        else:
            for j in range(size):
                for f in range(n_features):
                    xt[f, j] = X[start + j, f]
        acc = np.empty(n_margins * size, values.dtype)
        for k in range(n_margins):
            acc[k * size:(k + 1) * size] = base[k]
        left32 = np.empty(size, np.uint32)
        left64 = np.empty(size, np.uint64)
        vectors = size - size % ff._W  # pixels added 16 at a time, the others one by one
        for t in range(n_trees):
            first, row = leaf_base[t], tree_class[t] * size
            if leaf_base[t + 1] - first <= 32:
                _exit_leaves(left32, ONES32, keep32, xt, feature, threshold, flags,
                             node_base[t], node_base[t + 1], size)
                for j in range(0, vectors, ff._W):
                    _exit_add16(acc, values, left32, j, first, row)
                for j in range(vectors, size):
                    acc[row + j] += values[first + trailing_zeros(left32[j])]
            else:
                _exit_leaves(left64, ONES64, keep, xt, feature, threshold, flags,
                             node_base[t], node_base[t + 1], size)
                for j in range(0, vectors, ff._W):
                    _exit_add16(acc, values, left64, j, first, row)
                for j in range(vectors, size):
                    acc[row + j] += values[first + trailing_zeros(left64[j])]
        _finish(acc, size, size, start, link, scale, out)


_exit_kernel = ByThreads(_exit_kernel)


def _exit_add_codegen(context, builder, signature, args):
    """acc[row + j + lane] += values[first + lowest set bit of left[j + lane]]."""
    acc, values, left, j, first, row = ff._unpack(context, builder, signature, args, 3)
    ty = ff._F32 if signature.args[1].dtype == types.float32 else ff._F64
    mask_ty = ir.IntType(signature.args[2].dtype.bitwidth)
    masks = ff._vload(builder, left, j, mask_ty)
    name = f"llvm.cttz.v{ff._W}i{mask_ty.width}"
    cttz = builder.module.globals.get(name) or ir.Function(
        builder.module, ir.FunctionType(masks.type, [masks.type, ff._I1]), name)
    exits = builder.call(cttz, [masks, ir.Constant(ff._I1, 1)])  # never 0: one leaf is left
    if mask_ty.width > 32:
        exits = builder.trunc(exits, ff._vec(ff._I32))
    value = ff._gather(builder, values, builder.add(exits, ff._splat(builder, first)),
                       ff._BYTES[ty], ty)
    target = builder.add(row, j)
    ff._vstore(builder, builder.fadd(ff._vload(builder, acc, target, ty), value), acc, target,
               ty)
    return context.get_dummy_value()


@intrinsic
def _exit_add16(typingctx, acc, values, left, j, first, row):
    """Add the values of the exit leaves of pixels j..j+15 (their leaf bits `left`, the tree's
    first leaf `first`) to acc[row + j + lane]: the scalar loop vectorised (LLVM does not:
    the count of trailing zeros and the table lookup; 1.45x the exit kernel on Zen 3)."""
    return types.void(acc, values, left, j, first, row), _exit_add_codegen


@njit(inline="always")
def _exit_leaves(left, ones, keep, xt, feature, threshold, flags, first, last, size
                 ):  # pragma: no cover - compiled
    """left[j]: bits of the leaves of one tree that pixel j may reach after testing it on the
    tree's internal nodes first..last-1 (each pixel loop is vectorised by LLVM)."""
    for j in range(size):
        left[j] = ones
    for i in range(first, last):
        x_row, c, kept, flag = xt[feature[i]], threshold[i], keep[i], flags[i]
        if flag == 0:
            for j in range(size):
                left[j] &= kept if x_row[j] > c else ones
        elif flag == NAN_RIGHT:
            for j in range(size):
                x = x_row[j]
                left[j] &= kept if (x > c) | (x != x) else ones
        else:  # LightGBM zero-as-missing: [-1e-35, 1e-35] goes the other way
            nan_right = (flag & NAN_RIGHT) != 0
            for j in range(size):
                x = x_row[j]
                right = ((x > c) | (nan_right & (x != x))) ^ (abs(x) <= ZERO32)
                left[j] &= kept if right else ones


# --------------------------------------------------------------------------------------------
# SIMD kernel: fastforest's `_step16` walks the trees; `_add16` adds the leaves' values


def _add_codegen(context, builder, signature, args):
    """acc[row + 16v + lane] += values[leaf row of cur[16v + lane]] (float32 or float64)."""
    nodes, cur, values, acc, v, base, shift, row = ff._unpack(context, builder, signature,
                                                              args, 4)
    ty = ff._F32 if signature.args[2].dtype == types.float32 else ff._F64
    first = builder.mul(v, ir.Constant(ff._I32, ff._W))
    keys, _ = ff._node_fields(builder, nodes, ff._vload(builder, cur, first, ff._I32))
    rows = builder.add(builder.not_(builder.ashr(keys, ff._splat(builder, shift))),
                       ff._splat(builder, base))
    value = ff._gather(builder, values, rows, ff._BYTES[ty], ty)
    target = builder.add(row, first)
    ff._vstore(builder, builder.fadd(ff._vload(builder, acc, target, ty), value), acc, target,
               ty)
    return context.get_dummy_value()


@intrinsic
def _add16(typingctx, nodes, cur, values, acc, v, base, shift, row):
    """Add the values of the leaves reached by lanes 16v..16v+15 to acc[row + 16v + lane]."""
    return types.void(nodes, cur, values, acc, v, base, shift, row), _add_codegen


@njit(parallel=True, nogil=True, cache=True)
def _simd_kernel(nodes, roots, leaf_base, values, tree_class, base, shift, X, transposed,
                 block, vectors, link, scale, out):  # pragma: no cover - compiled
    """Same result as _scalar_kernel (no flips), 32 pixels in lockstep with vector gathers."""
    n, n_features = out.shape[0], X.shape[0] if transposed else X.shape[1]
    n_margins, n_trees, lanes = len(base), len(roots), ff._W * vectors
    for b in prange((n + block - 1) // block):
        start = b * block
        size = min(n, start + block) - start
        xb = ff._copy_block(X, transposed, start, size)
        stride = (size + lanes - 1) // lanes * lanes
        acc = np.empty(n_margins * stride, values.dtype)
        for k in range(n_margins):
            acc[k * stride:(k + 1) * stride] = base[k]
        cur = np.empty(lanes, np.int32)
        off = np.empty(lanes, np.int32)
        for t in range(n_trees):
            root, row = roots[t], tree_class[t] * stride
            for g in range(0, size, lanes):
                last = min(lanes, size - g) - 1
                for k in range(lanes):
                    cur[k] = root
                    off[k] = (g + min(k, last)) * n_features
                moving = True
                while moving:
                    moving = False
                    for v in range(vectors):
                        moving |= ff._step16(nodes, cur, off, xb, v, root, shift)
                for v in range(vectors):
                    _add16(nodes, cur, values, acc, v, leaf_base[t], shift, row + g)
        _finish(acc, stride, size, start, link, scale, out)


_simd_kernel = ByThreads(_simd_kernel)
