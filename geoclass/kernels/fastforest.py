"""Fast inference for random forests / extra trees: numba kernels on compact node arrays.

`compile_forest(estimator)` turns a fitted `RandomForestClassifier` / `ExtraTreesClassifier`
(alone, or last step of a Pipeline whose other steps are StandardScalers, folded into the
thresholds) into flat arrays, once per model; `predict_proba(forest, X, n_threads)` then gives
the same probabilities as the estimator's `predict_proba` on float32 pixels: bit for bit (each
leaf's class fractions are summed in float64 in tree order, then divided by the number of
trees, as scikit-learn does with n_jobs=1), so the argmax is the same on every pixel. Ties: the
caller takes np.argmax, i.e. the first class in `classes_` order, as scikit-learn's `predict`.
Results do not depend on the number of threads. Pixels with NaN follow each node's
`missing_go_to_left`, as scikit-learn.

Layout. Each node is 8 bytes: an int32 key and a float32 threshold. Siblings are adjacent
(left, right) in a depth-first order, so an internal node's key holds its left child's index
(relative to the tree's root) above a "NaN goes right" bit and the feature index; the next node
is `left + (x > threshold)`, without a branch. A leaf's key is negative: ~(its row in the
tree's table of class probabilities) shifted left (float64, one row per leaf), and, in the
bits below, 1 + its class when the leaf is pure (probability exactly 1 for one class, 0 for
the others), else 0: a pure leaf adds 1.0 to its class's sum without reading its row, the
same float64 sums as adding the row. The float32
threshold is the largest float32 <= scikit-learn's float64 threshold, so that for every float32
x, (x <= t32) == (x <= t64).

Kernel. Pixels go in blocks of 512 (one block per task of numba's `prange`; each block is
first copied into a contiguous float32 buffer). Within a block, trees are walked one after the
other (tree-major: the tree's nodes stay in L1/L2), by 32 pixels at once: 2 vectors of 16
lanes, one tree level per step, with AVX-512 gathers for the nodes (one 64-bit gather for key
and threshold) and the pixel values (LLVM `masked.gather` intrinsics written with llvmlite; on
CPUs without gathers LLVM emulates them, and on AVX2 CPUs without AVX-512, where LLVM emulates
them too, the AVX2 gather instructions are asked for by name: `AVX2_GATHERS`). The 32 lanes
walk in lockstep until all reached a leaf; then the leaf rows are gathered and their
probabilities added, per class, to the block's float64 sums. A portable scalar kernel (16
pixels interleaved) is kept as a fallback: it is used if the SIMD kernel does not compile or
disagrees with it on the first call, or if GEOCLASS_FASTFOREST_KERNEL=scalar.

Measured on the 2-core dev machine (Xeon with AVX-512, 48 KiB L1d and 2 MiB L2 per core),
busy with other jobs (load 2 to 6), so only ratios within one run count; forest of
benchmarks/bench_kernel.py (100 trees, max_depth 25, min_samples_leaf 5, 156 features, 10
classes, ~4000 nodes and ~14.5 nodes per path per tree); kpx/s on 1 thread, CPU time:
- scikit-learn predict_proba: ~35-55.
- scalar kernel, 16 pixels in lockstep: 55-90; +15 % without the NaN test; 8 to 64 lanes or
  refilling a lane as soon as its pixel reaches a leaf: no better. It is instruction-bound
  (~25 instructions per node visit), so it stays the fallback.
- SIMD lockstep: 16 lanes 130, 32 lanes 200, 64 lanes 260-270, 128 and 256 lanes no better;
  one 64-bit gather per node (key + threshold) instead of two 32-bit ones: +15 %; the class
  sums by gathers instead of a scalar loop: +10-20 % (they took ~40 % of the time: one random
  float64 row per pixel and tree in a 16 MB table, i.e. L3 misses; row-wise vector adds:
  same). Blocks of 512 to 2048 pixels: equal within noise; 256 and 4096: worse (a 1024-pixel
  block of 156 features is 640 KB of L2). No better within noise: refilling lanes as they
  reach a leaf (scatter + expand-load; ~14.5 instead of ~20 lane steps per pixel and tree),
  skipping finished vectors, prefetching the leaf rows, a feature-major block.
- Final on that Xeon (SIMD, 64 lanes, blocks of 1024): 330-380 on 1 thread, 7-8x scikit-learn.
  On 1 M pixels (bench_kernel.py, wall time), two runs: load ~5: scikit-learn 35 (n_jobs=1) and 40
  (n_jobs=2), this kernel 284 (1 thread) and 185 (2 threads: no idle core then); load ~3:
  scikit-learn 55 and 73, this kernel 311 and 697 (12.7x scikit-learn n_jobs=1, 9.6x
  n_jobs=2). Probabilities bit-identical to scikit-learn n_jobs=1 on all pixels.

On the AMD EPYC (Zen 4, AVX-512, 1 MiB L2 per core) VM of 2026-12-01 the same kernel first
ran at 100-150 kpx/s per thread, 1.1-1.6x scikit-learn: the leaf rows took more than half of
its time (229 against 104 kpx/s with the class sums left out). Reading only the rows of impure
leaves (the OTB anchor stack's forest: 79.5 % of its leaves are pure) gave +20 % (117 -> 141
kpx/s, 1 thread, its own pixels), and blocks of 512 pixels in 2 vectors instead of 1024 in 4,
+8 % more with two single-thread calls side by side as on a dask worker (225 -> 245 kpx/s
each); the classify step of that forest on the 2000 px stack went from 19.1 to 11.1 s.

On the AMD EPYC (Zen 3, AVX2, 512 KiB L2 per core) VM of 2026-12-01 LLVM emitted no gather
instruction (scalar loads instead); the AVX2 gathers by name gave 344-406 against 207-266
kpx/s (two single-thread calls side by side, OTB anchor forest, five runs alternated).

Threads: `n_threads` sets numba's thread count for this call only (numba's setting is per
calling thread), so that dask workers can give each task its share of cores. With numba's
"workqueue" threading layer, which is not thread-safe, calls are serialised by a lock (numba
picks tbb or omp first when they are available).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass

import numpy as np
import sklearn
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import njit, prange, types
from numba.core import config as numba_config
from numba.extending import intrinsic
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from geoclass.kernels.threads import ByThreads, numba_threads

log = logging.getLogger(__name__)

FORMAT = 1  # of CompiledForest: bump when its fields or encoding change (saved models)
BLOCK = 512  # pixels per parallel task
VECTORS = 2  # SIMD vectors of 16 lanes walking a tree together
SCALAR_LANES = 16  # pixels walking a tree together in the scalar kernel


@dataclass(frozen=True, eq=False)
class CompiledForest:
    """A forest as flat arrays (see the module docstring for the encoding)."""

    nodes: np.ndarray  # (n_nodes, 2) int32: key, float32 threshold bits
    roots: np.ndarray  # (n_trees,) int64: index of each tree's root in `nodes`
    leaf_base: np.ndarray  # (n_trees,) int64: first row of each tree in `values`
    values: np.ndarray  # (n_leaves, n_classes) float64: class probabilities of each leaf
    shift: int  # key >> shift: left child (internal node) or ~leaf row (leaf)
    classes_: np.ndarray
    n_features: int

    @property
    def n_classes(self) -> int:
        """Number of classes, i.e. of probability columns."""
        return len(self.classes_)

    @property
    def n_trees(self) -> int:
        """Number of trees."""
        return len(self.roots)


# --------------------------------------------------------------------------------------------
# compile


def compile_forest(estimator) -> CompiledForest | None:
    """Compile a fitted forest classifier, or a Pipeline of StandardScalers then a forest.

    Returns None for anything else (the caller then uses the estimator's `predict_proba`)."""
    steps = _split_pipeline(estimator)
    if steps is None or not _is_supported_forest(steps[1]):
        return None
    scalers, forest = steps
    n_features = int(forest.n_features_in_)
    arrays = _compile_trees([tree.tree_ for tree in forest.estimators_], n_features)
    if arrays is None:
        return None
    nodes, roots, leaf_base, values, shift = arrays
    if scalers:
        _fold_scalers(scalers, nodes, shift, n_features)
    return CompiledForest(nodes, roots, leaf_base, values, shift,
                          np.asarray(forest.classes_), n_features)


def _split_pipeline(estimator):
    """(leading StandardScalers, last step), or None for a Pipeline with other steps."""

    if not isinstance(estimator, Pipeline):
        return [], estimator
    *head, (_, last) = estimator.steps
    scalers = [step for _, step in head if step is not None and step != "passthrough"]
    if not all(type(step) is StandardScaler for step in scalers):
        return None
    return scalers, last


def _is_supported_forest(forest) -> bool:
    """A fitted, single-output RandomForestClassifier / ExtraTreesClassifier."""

    return (isinstance(forest, (RandomForestClassifier, ExtraTreesClassifier))
            and len(getattr(forest, "estimators_", [])) > 0 and forest.n_outputs_ == 1)


def _compile_trees(trees, n_features: int):
    """(nodes, roots, leaf_base, values, shift) of all trees, or None if indices overflow."""
    feature_bits = max(1, (n_features - 1).bit_length())
    # the low `shift` bits of a leaf's key hold 1 + its class when the leaf is pure
    shift = max(feature_bits + 1, int(trees[0].value.shape[2]).bit_length())
    compiled = [_compile_tree(tree, shift) for tree in trees]
    sizes = np.array([len(keys) for keys, _, _ in compiled], np.int64)
    leaves = np.array([len(values) for _, _, values in compiled], np.int64)
    n_classes = compiled[0][2].shape[1]
    if (sizes.max() >= 2 ** (31 - shift) or leaves.max() >= 2 ** (31 - shift)
            or 2 * sizes.sum() >= 2 ** 31 or leaves.sum() * n_classes >= 2 ** 31):
        return None
    nodes = np.empty((sizes.sum(), 2), np.int32)
    nodes[:, 0] = np.concatenate([keys for keys, _, _ in compiled])
    nodes[:, 1] = np.concatenate([thresholds for _, thresholds, _ in compiled]).view(np.int32)
    values = np.ascontiguousarray(np.concatenate([values for _, _, values in compiled]))
    return (nodes, np.cumsum(sizes) - sizes, np.cumsum(leaves) - leaves, values, shift)


def _compile_tree(tree, shift: int):
    """One tree: keys (int64), float32 thresholds and leaf values, in sibling-pair order."""
    left = tree.children_left
    order = _pair_order(left, tree.children_right)
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))
    is_leaf = left[order] < 0
    leaf_row = np.cumsum(is_leaf) - 1
    nan_right = getattr(tree, "missing_go_to_left", np.zeros(len(left), np.uint8))[order] == 0
    inner_key = ((position[np.maximum(left[order], 0)] << shift)
                 | (nan_right.astype(np.int64) << (shift - 1)) | tree.feature[order])
    values = _leaf_values(tree, order[is_leaf])
    leaf_keys = (~np.arange(len(values), dtype=np.int64) << shift) | _pure_codes(values)
    keys = np.where(is_leaf, leaf_keys[np.maximum(leaf_row, 0)], inner_key)
    thresholds = np.where(is_leaf, np.float32(0), _floor_float32(tree.threshold[order]))
    return keys, thresholds.astype(np.float32), values


def _pure_codes(values: np.ndarray) -> np.ndarray:
    """1 + the class of each leaf whose probabilities are exactly 1 for that class and 0
    for the others, else 0. The kernels add 1.0 to that class's sum without reading the
    leaf's row (the same float64 sum: the row's other terms are +0.0)."""
    best = np.argmax(values, axis=1)
    pure = (values[np.arange(len(values)), best] == 1.0) & (np.count_nonzero(values, axis=1) == 1)
    return np.where(pure, best + 1, 0).astype(np.int64)


@njit(cache=True)
def _pair_order(left, right):  # pragma: no cover - compiled
    """Depth-first node order where both children of a node are adjacent, left first."""
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
    return order


def _floor_float32(threshold: np.ndarray) -> np.ndarray:
    """Largest float32 <= each float64 threshold: x <= t32 iff x <= t64 for any float32 x."""
    t32 = np.asarray(threshold, np.float64).astype(np.float32)
    above = t32.astype(np.float64) > threshold
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


def _leaf_values(tree, leaves: np.ndarray) -> np.ndarray:
    """Each leaf's class probabilities, computed as the tree's `predict_proba` does."""
    value = np.array(tree.value[leaves, 0, :], np.float64)
    if not _values_are_fractions():  # scikit-learn < 1.4 stores counts and normalises
        normalizer = value.sum(axis=1)[:, np.newaxis]
        normalizer[normalizer == 0.0] = 1.0
        value /= normalizer
    return value


def _values_are_fractions() -> bool:
    """scikit-learn >= 1.4 stores class fractions in tree_.value and returns them as is."""
    major, minor = (int(part) for part in sklearn.__version__.split(".")[:2])
    return (major, minor) >= (1, 4)


# --------------------------------------------------------------------------------------------
# StandardScaler folding: x goes left iff scaled(x) <= t, and scaled() is non-decreasing, so
# iff x <= u with u the largest float32 whose scaled value is <= t (found by bisection, with
# the scalers' own `transform`, so its float32 arithmetic is reproduced exactly).

_MAX_ORDINAL = int(np.float32(np.finfo(np.float32).max).view(np.int32))


def _fold_scalers(scalers, nodes: np.ndarray, shift: int, n_features: int) -> None:
    """Replace, in place, the thresholds of internal nodes by thresholds on raw pixels."""
    inner = nodes[:, 0] >= 0
    if not inner.any():
        return
    features = nodes[inner, 0] & ((1 << (shift - 1)) - 1)
    thresholds = nodes[inner, 1].view(np.float32)
    pairs, index = np.unique(np.stack([features, thresholds.view(np.int32)]), axis=1,
                             return_inverse=True)
    raw = _raw_thresholds(scalers, pairs[0], pairs[1].view(np.float32), n_features)
    nodes[inner, 1] = raw.view(np.int32)[index.ravel()]


def _raw_thresholds(scalers, features, thresholds, n_features: int) -> np.ndarray:
    """For each (feature, t): the largest float32 u with scaled(u) <= t (-inf if none)."""
    rank = _rank_within(features)
    low = np.full(len(features), -_MAX_ORDINAL - 1, np.int64)  # scaled <= t (virtual)
    high = np.full(len(features), _MAX_ORDINAL + 1, np.int64)  # scaled > t (virtual)
    while np.any(high - low > 1):
        middle = (low + high) // 2
        below = _scaled(scalers, _from_ordinal(middle), features, rank, n_features) <= thresholds
        low, high = np.where(below, middle, low), np.where(below, high, middle)
    raw = _from_ordinal(np.maximum(low, -_MAX_ORDINAL))
    raw[low < -_MAX_ORDINAL] = -np.inf
    raw[np.isposinf(thresholds)] = np.inf  # every value but NaN goes left
    return raw


def _rank_within(features: np.ndarray) -> np.ndarray:
    """Rank of each entry among the entries of the same feature."""
    order = np.argsort(features, kind="stable")
    counts = np.bincount(features, minlength=1)
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(features), np.int64)
    rank[order] = np.arange(len(features)) - starts[features[order]]
    return rank


def _scaled(scalers, values, features, rank, n_features: int) -> np.ndarray:
    """The scalers' output for each value put in its feature's column."""
    table = np.zeros((int(rank.max()) + 1, n_features), np.float32)
    table[rank, features] = values
    with warnings.catch_warnings():  # e.g. "X does not have valid feature names"
        warnings.simplefilter("ignore", UserWarning)
        for scaler in scalers:
            table = np.asarray(scaler.transform(table), np.float32)
    return table[rank, features]


def _from_ordinal(ordinal: np.ndarray) -> np.ndarray:
    """The float32 of each ordinal (float32 order mapped onto integers, -0.0 as 0)."""
    bits = np.where(ordinal >= 0, ordinal, (-ordinal) | 0x80000000)
    return bits.astype(np.uint32).view(np.float32)


# --------------------------------------------------------------------------------------------
# predict

_KERNEL: list[str] = []  # "simd" or "scalar", chosen on the first call


def predict_proba(forest: CompiledForest, X: np.ndarray, n_threads: int | None = None
                  ) -> np.ndarray:
    """Class probabilities (n, n_classes) float64 of pixels X (n, n_features), cast to
    float32, on `n_threads` numba threads (None: numba's current setting)."""
    pixels = _as_pixels(X, forest.n_features)
    with numba_threads(n_threads):
        return _predict(forest, pixels, _kernel_name(forest, pixels))


def _predict(forest: CompiledForest, pixels: tuple[np.ndarray, bool], kernel: str
             ) -> np.ndarray:
    """Run one kernel ("simd" or "scalar") on `_as_pixels` output."""
    X, transposed = pixels
    out = np.empty((X.shape[1] if transposed else X.shape[0], forest.n_classes), np.float64)
    if len(out) == 0:
        return out
    if kernel == "simd":
        _simd_kernel(forest.nodes.view(np.int64).ravel(), forest.roots, forest.leaf_base,
                     forest.values, forest.shift, X, transposed, BLOCK, VECTORS, out)
    else:
        _scalar_kernel(forest.nodes, forest.nodes.view(np.float32), forest.roots,
                       forest.leaf_base, forest.values, forest.shift, X, transposed,
                       BLOCK, SCALAR_LANES, out)
    return out


def _as_pixels(X, n_features: int) -> tuple[np.ndarray, bool]:
    """(A, transposed): A is C-contiguous float32, X itself (n, F) or X.T (F, n), no copy if
    X is already C- or F-contiguous float32 (one compiled kernel serves both layouts)."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"expected pixels of shape (n, {n_features}), got {X.shape}")
    if X.dtype == np.float32 and X.flags.f_contiguous and not X.flags.c_contiguous:
        return X.T, True
    return np.ascontiguousarray(X, dtype=np.float32), False


def _kernel_name(forest: CompiledForest, pixels: tuple[np.ndarray, bool]) -> str:
    """The kernel to use: chosen once, on the first call, by checking the SIMD kernel."""
    if not _KERNEL:
        if os.environ.get("GEOCLASS_FASTFOREST_KERNEL") == "scalar":
            _KERNEL.append("scalar")
        elif pixels[0].size == 0:
            return "simd"  # nothing to run: decide on a later call
        else:
            _KERNEL.append(_check_simd(forest, pixels))
    return _KERNEL[0]


def _check_simd(forest: CompiledForest, pixels: tuple[np.ndarray, bool]) -> str:
    """"simd" if the SIMD kernel compiles and matches the scalar one, else "scalar"."""
    X, transposed = pixels
    sample = (np.ascontiguousarray(X[:, :256] if transposed else X[:256]), transposed)
    try:
        same = np.array_equal(_predict(forest, sample, "simd"),
                              _predict(forest, sample, "scalar"))
    except Exception:  # any compile failure: use the portable kernel
        log.warning("fastforest: SIMD kernel unavailable, using the scalar kernel",
                    exc_info=True)
        return "scalar"
    if not same:
        log.warning("fastforest: SIMD kernel disagrees with the scalar kernel; using the latter")
    return "simd" if same else "scalar"


# --------------------------------------------------------------------------------------------
# SIMD kernel: LLVM vector intrinsics for 16 lanes (int32 / float32 lanes: one AVX-512 register)

_W = 16
_I1, _I32, _I64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
_F32, _F64 = ir.FloatType(), ir.DoubleType()
_TYPE_NAMES = {_I32: "i32", _I64: "i64", _F32: "f32", _F64: "f64"}
_BYTES = {_I32: 4, _I64: 8, _F32: 4, _F64: 8}


def _vec(ty):
    """Vector of 16 `ty`."""
    return ir.VectorType(ty, _W)


def _splat(builder, value):
    """Vector of 16 copies of a scalar."""
    vector = builder.insert_element(ir.Constant(_vec(value.type), None), value,
                                    ir.Constant(_I32, 0))
    return builder.shuffle_vector(vector, vector, ir.Constant(_vec(_I32), [0] * _W))


def _vload(builder, pointer, offset, ty):
    """16 consecutive `ty` at pointer[offset]."""
    return builder.load(_vpointer(builder, pointer, offset, ty), align=_BYTES[ty])


def _vstore(builder, value, pointer, offset, ty):
    """Store 16 `ty` at pointer[offset]."""
    builder.store(value, _vpointer(builder, pointer, offset, ty), align=_BYTES[ty])


def _vpointer(builder, pointer, offset, ty):
    """pointer[offset] as a pointer to a vector."""
    return builder.bitcast(builder.gep(pointer, [offset]), _vec(ty).as_pointer())


def _avx2_gathers() -> bool:
    """Whether numba compiles for a CPU with AVX2 but without AVX-512 (e.g. AMD Zen 3), on
    which LLVM turns `llvm.masked.gather` into scalar loads (it judges the gathers slow):
    there the AVX2 gather instructions are asked for by name, which on the OTB anchor forest
    made the kernel 1.35-1.55x faster (two single-thread calls side by side, RESULTS.md issue
    18, sixth session). False when NUMBA_CPU_NAME / NUMBA_CPU_FEATURES choose another
    target (e.g. a portable cache)."""
    if numba_config.CPU_NAME or numba_config.CPU_FEATURES:
        return False
    try:
        features = llvm_binding.get_host_cpu_features()
    except RuntimeError:  # no feature list on this platform
        return False
    return bool(features.get("avx2")) and not features.get("avx512f")


AVX2_GATHERS = _avx2_gathers()
# (intrinsic, lanes, lane mask type) of the AVX2 gathers with 32-bit indices, per element type
_AVX2_GATHER = {_I64: ("llvm.x86.avx2.gather.d.q.256", 4, _I64),
                _F64: ("llvm.x86.avx2.gather.d.pd.256", 4, _I64),
                _F32: ("llvm.x86.avx2.gather.d.ps.256", 8, _I32),
                _I32: ("llvm.x86.avx2.gather.d.d.256", 8, _I32)}


def _gather(builder, base, index, scale: int, ty, mask=None):
    """base[index * scale bytes] for the 16 int32 indices (masked-off lanes: 0)."""
    if AVX2_GATHERS:
        return _avx2_gather(builder, base, index, scale, ty, mask)
    address = builder.add(builder.mul(builder.sext(index, _vec(_I64)),
                                      _splat(builder, ir.Constant(_I64, scale))),
                          _splat(builder, builder.ptrtoint(base, _I64)))
    pointers = builder.inttoptr(address, _vec(ty.as_pointer()))
    mask = ir.Constant(_vec(_I1), [1] * _W) if mask is None else mask
    name = f"llvm.masked.gather.v{_W}{_TYPE_NAMES[ty]}.v{_W}p0"
    signature = ir.FunctionType(_vec(ty), [pointers.type, _I32, _vec(_I1), _vec(ty)])
    function = builder.module.globals.get(name) or ir.Function(builder.module, signature, name)
    return builder.call(function, [pointers, ir.Constant(_I32, _BYTES[ty]), mask,
                                   ir.Constant(_vec(ty), None)])


def _avx2_gather(builder, base, index, scale: int, ty, mask=None):
    """`_gather` by AVX2 gather instructions, 4 or 8 lanes each, joined into 16 lanes."""
    name, lanes, mask_ty = _AVX2_GATHER[ty]
    part_ty = ir.VectorType(ty, lanes)
    signature = ir.FunctionType(part_ty, [part_ty, ir.IntType(8).as_pointer(),
                                          ir.VectorType(_I32, lanes), part_ty, ir.IntType(8)])
    function = builder.module.globals.get(name) or ir.Function(builder.module, signature, name)
    wide_mask = None if mask is None else builder.sext(mask, _vec(mask_ty))  # sign bit: load
    pointer = builder.bitcast(base, ir.IntType(8).as_pointer())
    parts = []
    for first in range(0, _W, lanes):
        pick = ir.Constant(ir.VectorType(_I32, lanes), list(range(first, first + lanes)))
        part_mask = (ir.Constant(ir.VectorType(mask_ty, lanes), [-1] * lanes) if mask is None
                     else builder.shuffle_vector(wide_mask, wide_mask, pick))
        parts.append(builder.call(function, [
            ir.Constant(part_ty, None), pointer, builder.shuffle_vector(index, index, pick),
            builder.bitcast(part_mask, part_ty), ir.Constant(ir.IntType(8), scale)]))
    while len(parts) > 1:  # join pairs: 4 + 4 -> 8, 8 + 8 -> 16
        width = 2 * parts[0].type.count
        join = ir.Constant(ir.VectorType(_I32, width), list(range(width)))
        parts = [builder.shuffle_vector(parts[i], parts[i + 1], join)
                 for i in range(0, len(parts), 2)]
    return parts[0]


def _unpack(context, builder, signature, args, n_arrays: int):
    """Data pointers of the first `n_arrays` arguments, then the others as int32."""
    pointers = [context.make_array(ty)(context, builder, value).data
                for ty, value in zip(signature.args[:n_arrays], args[:n_arrays])]
    scalars = [context.cast(builder, value, ty, types.int32)
               for ty, value in zip(signature.args[n_arrays:], args[n_arrays:])]
    return pointers + scalars


def _node_fields(builder, nodes, cur):
    """(keys, thresholds) of the 16 nodes `cur`, by one 64-bit gather."""
    packed = _gather(builder, nodes, cur, 8, _I64)
    keys = builder.trunc(packed, _vec(_I32))
    high = builder.lshr(packed, _splat(builder, ir.Constant(_I64, 32)))
    return keys, builder.bitcast(builder.trunc(high, _vec(_I32)), _vec(_F32))


def _step_codegen(context, builder, signature, args):
    """Move the lanes 16v..16v+15 one level down; True if any of them was not at a leaf."""
    nodes, cur, off, xb, v, root, shift = _unpack(context, builder, signature, args, 4)
    first = builder.mul(v, ir.Constant(_I32, _W))
    node = _vload(builder, cur, first, _I32)
    keys, thresholds = _node_fields(builder, nodes, node)
    inner = builder.icmp_signed(">=", keys, ir.Constant(_vec(_I32), None))
    one = _splat(builder, ir.Constant(_I32, 1))
    flag_shift = _splat(builder, builder.sub(shift, ir.Constant(_I32, 1)))
    feature = builder.and_(keys, builder.sub(builder.shl(one, flag_shift), one))
    x = _gather(builder, xb, builder.add(_vload(builder, off, first, _I32), feature), 4, _F32,
                inner)
    nan_right = builder.trunc(builder.lshr(keys, flag_shift), _vec(_I1))
    right = builder.or_(builder.fcmp_ordered(">", x, thresholds),
                        builder.and_(nan_right, builder.fcmp_unordered("uno", x, x)))
    child = builder.add(builder.ashr(keys, _splat(builder, shift)), _splat(builder, root))
    moved = builder.add(child, builder.zext(right, _vec(_I32)))
    _vstore(builder, builder.select(inner, moved, node), cur, first, _I32)
    any_inner = builder.bitcast(inner, ir.IntType(_W))
    return builder.icmp_unsigned("!=", any_inner, ir.Constant(ir.IntType(_W), 0))


@intrinsic
def _step16(typingctx, nodes, cur, off, xb, v, root, shift):
    """One tree level for lanes 16v..16v+15: cur[lane] (node) moves to its child for pixel
    values xb[off[lane]:]; a lane at a leaf stays. True if any lane moved."""
    return types.boolean(nodes, cur, off, xb, v, root, shift), _step_codegen


def _accumulate_codegen(context, builder, signature, args):
    """acc[c * stride + g + 16v + lane] += values[leaf row of cur[16v + lane], c], all c."""
    nodes, cur, values, acc, v, base, shift, n_classes, stride, g = _unpack(
        context, builder, signature, args, 4)
    first = builder.mul(v, ir.Constant(_I32, _W))
    keys, _ = _node_fields(builder, nodes, _vload(builder, cur, first, _I32))
    rows = builder.add(builder.not_(builder.ashr(keys, _splat(builder, shift))),
                       _splat(builder, base))
    index = builder.mul(rows, _splat(builder, n_classes))
    target = builder.add(g, first)
    one = _splat(builder, ir.Constant(_I32, 1))
    # pure leaves: 1 + class in the key's low bits (-1 below: no class for the others)
    pure_class = builder.sub(builder.and_(keys, builder.sub(
        builder.shl(one, _splat(builder, shift)), one)), one)
    impure = builder.icmp_signed("<", pure_class, ir.Constant(_vec(_I32), None))
    unit = _splat(builder, ir.Constant(_F64, 1.0))
    with _Loop(builder, n_classes) as c:
        sums = builder.add(target, builder.mul(c, stride))
        value = _gather(builder, values, builder.add(index, _splat(builder, c)), 8, _F64,
                        impure)  # rows of impure leaves only; 0.0 elsewhere
        value = builder.select(builder.icmp_signed("==", pure_class, _splat(builder, c)),
                               unit, value)
        _vstore(builder, builder.fadd(_vload(builder, acc, sums, _F64), value), acc, sums, _F64)
    return context.get_dummy_value()


class _Loop:
    """`with _Loop(builder, n) as i:` emits an LLVM loop for i in range(n), n >= 1 (int32)."""

    def __init__(self, builder, n):
        self.builder, self.n = builder, n

    def __enter__(self):
        builder = self.builder
        self.entry = builder.block
        self.body = builder.append_basic_block("loop")
        self.exit = builder.append_basic_block("loop_end")
        builder.branch(self.body)
        builder.position_at_end(self.body)
        self.i = builder.phi(_I32)
        self.i.add_incoming(ir.Constant(_I32, 0), self.entry)
        return self.i

    def __exit__(self, *exc):
        builder = self.builder
        following = builder.add(self.i, ir.Constant(_I32, 1))
        self.i.add_incoming(following, builder.block)
        builder.cbranch(builder.icmp_signed("<", following, self.n), self.body, self.exit)
        builder.position_at_end(self.exit)
        return False


@intrinsic
def _accumulate16(typingctx, nodes, cur, values, acc, v, base, shift, n_classes, stride, g):
    """Add the class probabilities of the leaves reached by lanes 16v..16v+15 to the sums
    acc[c * stride + g + lane] (float64, in tree order)."""
    sig = types.void(nodes, cur, values, acc, v, base, shift, n_classes, stride, g)
    return sig, _accumulate_codegen


@njit(parallel=True, nogil=True, cache=True)
def _simd_kernel(nodes, roots, leaf_base, values, shift, X, transposed, block, vectors,
                 out):  # pragma: no cover - compiled
    """Mean leaf probabilities over the trees, pixel blocks in parallel (see module doc)."""
    n, n_features = out.shape[0], X.shape[0] if transposed else X.shape[1]
    n_classes, n_trees, lanes = values.shape[1], len(roots), _W * vectors
    flat_values = values.ravel()
    for b in prange((n + block - 1) // block):
        start = b * block
        size = min(n, start + block) - start
        xb = _copy_block(X, transposed, start, size)
        stride = (size + lanes - 1) // lanes * lanes
        acc = np.zeros(n_classes * stride, np.float64)
        cur = np.empty(lanes, np.int32)
        off = np.empty(lanes, np.int32)
        for t in range(n_trees):
            root = roots[t]
            for g in range(0, size, lanes):
                last = min(lanes, size - g) - 1
                for k in range(lanes):
                    cur[k] = root
                    off[k] = (g + min(k, last)) * n_features
                moving = True
                while moving:
                    moving = False
                    for v in range(vectors):
                        moving |= _step16(nodes, cur, off, xb, v, root, shift)
                for v in range(vectors):
                    _accumulate16(nodes, cur, flat_values, acc, v, leaf_base[t], shift,
                                  n_classes, stride, g)
        for j in range(size):
            for c in range(n_classes):
                out[start + j, c] = acc[c * stride + j] / n_trees


_simd_kernel = ByThreads(_simd_kernel)


@njit(inline="always")
def _copy_block(X, transposed, start, size):  # pragma: no cover - compiled
    """Pixels start..start+size of X (or of X.T) as one float32 buffer, pixel after pixel."""
    n_features = X.shape[0] if transposed else X.shape[1]
    xb = np.empty(size * n_features, np.float32)
    if transposed:
        for f in range(n_features):
            for j in range(size):
                xb[j * n_features + f] = X[f, start + j]
    else:
        for j in range(size):
            for f in range(n_features):
                xb[j * n_features + f] = X[start + j, f]
    return xb


# --------------------------------------------------------------------------------------------
# scalar kernel (portable fallback): `lanes` pixels walk a tree in lockstep


@njit(parallel=True, nogil=True, cache=True)
def _scalar_kernel(nodes, thresholds, roots, leaf_base, values, shift, X, transposed, block,
                   lanes, out):  # pragma: no cover - compiled
    """Same result as _simd_kernel, without vector intrinsics."""
    n, n_features = out.shape[0], X.shape[0] if transposed else X.shape[1]
    n_classes, n_trees = values.shape[1], len(roots)
    feature_mask = (1 << (shift - 1)) - 1
    for b in prange((n + block - 1) // block):
        start = b * block
        size = min(n, start + block) - start
        xb = _copy_block(X, transposed, start, size)
        acc = np.zeros((size, n_classes), np.float64)
        cur = np.empty(lanes, np.int64)
        for t in range(n_trees):
            root = roots[t]
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
                        inner = key >= 0
                        cur[k] = root + (key >> shift) + right if inner else i
                        moving |= inner
                for k in range(m):
                    key = np.int64(nodes[cur[k], 0])
                    pure_class = (key & ((1 << shift) - 1)) - 1
                    if pure_class >= 0:
                        acc[g + k, pure_class] += 1.0
                        continue
                    row = leaf_base[t] + ~(key >> shift)
                    for c in range(n_classes):
                        acc[g + k, c] += values[row, c]
        for j in range(size):
            for c in range(n_classes):
                out[start + j, c] = acc[j, c] / n_trees


_scalar_kernel = ByThreads(_scalar_kernel)
