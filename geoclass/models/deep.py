"""Deep temporal classifiers of pixel time series, as scikit-learn estimators on geoclass's flat
feature vectors: TempCNN (Pelletier et al. 2019) and L-TAE, the lightweight temporal attention
encoder (Garnot & Landrieu 2020).

PyTorch is optional: it is imported only to fit, use or load a model; without it, `fit` raises a
`ConfigError` that says how to install it.

Feature layout (`temporal_layout`): a name `<channel>_<YYYYMMDD>` (e.g. `B2_20180511`,
`L8_B5_20180520`) is the value of that channel at that date; the series is the sorted union of
the dates by the channels, a (date, channel) without a column being missing (zero once
standardized, i.e. the channel's mean). Every other name (e.g. `MNT_b1`) is a static feature,
standardized per column and joined to the encoder's output before the classifier head. When no
name carries a date, the F features are read in their given order as one series of F steps of a
single channel `value` (steps 0..F-1 as positions), e.g. `NDVI_b1..NDVI_bF`.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import logging
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted

from geoclass.errors import ConfigError

log = logging.getLogger(__name__)

PREDICT_BATCH = 16384
DATED = re.compile(r"^(?P<channel>.+)_(?P<date>\d{8})$")


# --- feature layout ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Layout:
    """Where each (date, channel) of a flat feature vector lies."""

    channels: tuple[str, ...]
    dates: tuple[dt.date, ...]  # empty under the no-date rule
    days: np.ndarray  # (T,) position of each step: days since the first date, or step number
    index: np.ndarray  # (T, C) column of each (step, channel), -1 when missing
    static: np.ndarray  # (S,) columns of the undated (static) features
    static_names: tuple[str, ...]
    n_features: int

    @property
    def present(self) -> np.ndarray:
        """(T, C) True where a (step, channel) has a column."""
        return self.index >= 0

    def series(self, x: np.ndarray) -> np.ndarray:
        """(n, F) features -> float32 (n, T, C) series, zero where missing."""
        flat = self.index.ravel()
        out = np.zeros((len(x), flat.size), np.float32)
        out[:, flat >= 0] = x[:, flat[flat >= 0]]
        return out.reshape(len(x), *self.index.shape)

    def statics(self, x: np.ndarray) -> np.ndarray:
        """(n, F) features -> float32 (n, S) static features."""
        return np.asarray(x[:, self.static], np.float32)


def _split(name: str) -> tuple[str, dt.date] | None:
    """(channel, date) of a dated feature name, None for a static one."""
    match = DATED.match(name)
    if not match:
        return None
    try:
        return match["channel"], dt.datetime.strptime(match["date"], "%Y%m%d").date()
    except ValueError:
        return None


def _undated_layout(n: int) -> Layout:
    steps = np.arange(n)
    return Layout(("value",), (), steps.astype(np.float64), steps.reshape(n, 1),
                  np.empty(0, np.int64), (), n)


def temporal_layout(names, canonical: bool = False) -> Layout:
    """The layout of features `names` (see the module docstring). Channels and static features
    come in first-seen order, or in sorted name order if `canonical` (so that a permutation of
    the columns gives the same layout)."""
    names = [str(n) for n in names]
    parsed = [_split(n) for n in names]
    if not any(parsed):
        return _undated_layout(len(names))
    order = sorted(range(len(names)), key=names.__getitem__) if canonical else range(len(names))
    channels = list(dict.fromkeys(parsed[i][0] for i in order if parsed[i]))
    dates = sorted({p[1] for p in parsed if p})
    row = {d: i for i, d in enumerate(dates)}
    col = {c: j for j, c in enumerate(channels)}
    index = np.full((len(dates), len(channels)), -1, np.int64)
    for i, p in enumerate(parsed):
        if p and index[row[p[1]], col[p[0]]] >= 0:
            raise ConfigError(f"feature names: '{names[i]}' appears twice")
        if p:
            index[row[p[1]], col[p[0]]] = i
    static = [i for i in order if parsed[i] is None]
    days = np.array([(d - dates[0]).days for d in dates], np.float64)
    return Layout(tuple(channels), tuple(dates), days, index, np.array(static, np.int64),
                  tuple(names[i] for i in static), len(names))


# --- standardization -----------------------------------------------------------------------


def _mean_std(values: np.ndarray, axis=0) -> tuple[np.ndarray, np.ndarray]:
    mean = values.mean(axis=axis, dtype=np.float64)
    std = values.std(axis=axis, dtype=np.float64)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    return mean, std


def fit_normalization(layout: Layout, series: np.ndarray, statics: np.ndarray) -> dict:
    """Per-channel mean and std of the present values (over samples and dates), per-column
    mean and std of the static features."""
    present = layout.present
    channel = [_mean_std(series[:, present[:, c], c].ravel()) for c in range(present.shape[1])]
    static_mean, static_std = _mean_std(statics) if statics.shape[1] else (np.zeros(0),) * 2
    return {"mean": np.array([m for m, _ in channel], np.float32),
            "std": np.array([s for _, s in channel], np.float32),
            "static_mean": np.asarray(static_mean, np.float32),
            "static_std": np.asarray(static_std, np.float32)}


def normalize(layout: Layout, norm: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, F) features -> standardized float32 (n, T, C) series and (n, S) statics."""
    series = (layout.series(x) - norm["mean"]) / norm["std"]
    series[:, ~layout.present] = 0.0
    statics = (layout.statics(x) - norm["static_mean"]) / norm["static_std"]
    return series, statics


# --- torch ---------------------------------------------------------------------------------


def _torch_missing(name: str) -> str:
    return (f"models.classifier: {name} needs PyTorch: pip install 'geoclass[dl]' "
            "(CPU: pip install torch==2.13.0 first)")


def torch_problem(name: str) -> str | None:
    """`_require_torch`'s message when torch cannot be found, else None; does not import torch
    (a few seconds and ~300 MB), for the checks run before any work."""
    try:
        found = importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        found = False
    return None if found else _torch_missing(name)


def _require_torch(name: str):
    """The torch module, or a ConfigError saying how to install it."""
    try:
        import torch
    except ImportError:
        raise ConfigError(_torch_missing(name)) from None
    return torch


def _device(torch, device: str):
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextmanager
def _torch_settings(torch, n_threads: int | None, deterministic: bool = False):
    """Set torch's thread count (and deterministic algorithms) for a block, restored after."""
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if n_threads:
        torch.set_num_threads(int(n_threads))
    if deterministic:
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=warn_only)


def _sinusoid(torch, positions, size: int, period: float):
    """(T, size) sinusoidal encoding of `positions` (Vaswani et al. 2017)."""
    pos = torch.as_tensor(positions, dtype=torch.float32)[:, None]
    rate = period ** (2 * (torch.arange(size) // 2) / size)
    angle = pos / rate
    return torch.where(torch.arange(size) % 2 == 0, torch.sin(angle), torch.cos(angle))


def _mlp(nn, sizes, dropout: float = 0.0) -> list:
    """Linear + BatchNorm + ReLU (+ Dropout) layers through `sizes`."""
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
    return layers


@functools.cache
def _networks() -> dict:
    """The torch modules by kind (defined on first use, so that torch stays optional)."""
    import torch
    from torch import nn

    class TempCNN(nn.Module):
        """3 x (Conv1d + BN + ReLU + Dropout) over time, flatten, Dense + BN + ReLU +
        Dropout, linear output (Pelletier et al. 2019)."""

        def __init__(self, n_channels, n_steps, n_static, n_classes, filters=64, kernel_size=5,
                     hidden=256, dropout=0.2, head_dropout=0.5, **_):
            super().__init__()
            layers, size = [], n_channels
            for _ in range(3):
                layers += [nn.Conv1d(size, filters, kernel_size, padding="same"),
                           nn.BatchNorm1d(filters), nn.ReLU(), nn.Dropout(dropout)]
                size = filters
            self.encoder = nn.Sequential(*layers, nn.Flatten())
            self.head = nn.Sequential(*_mlp(nn, [filters * n_steps + n_static, hidden],
                                            head_dropout), nn.Linear(hidden, n_classes))

        def forward(self, series, static):
            encoded = self.encoder(series.transpose(1, 2))
            return self.head(torch.cat([encoded, static], dim=1))

    class LightTAE(nn.Module):
        """Per-date linear embedding + sinusoidal encoding of the date, one learnt master query
        per head attending over the dates, MLP, then an MLP decoder (Garnot & Landrieu 2020)."""

        def __init__(self, n_channels, n_static, n_classes, days, d_model=128, n_head=16, d_k=8,
                     mlp=128, decoder=(64, 32), dropout=0.2, attn_dropout=0.1, period=1000.0,
                     **_):
            super().__init__()
            self.n_head, self.d_k = n_head, d_k
            self.embed = nn.Linear(n_channels, d_model)
            position = _sinusoid(torch, days, d_model // n_head, period).repeat(1, n_head)
            self.register_buffer("position", position)
            self.query = nn.Parameter(torch.randn(n_head, d_k) * math.sqrt(2.0 / d_k))
            self.key = nn.Linear(d_model, n_head * d_k)
            nn.init.normal_(self.key.weight, std=math.sqrt(2.0 / d_k))
            self.attn_dropout = nn.Dropout(attn_dropout)
            self.encoder_mlp = nn.Sequential(*_mlp(nn, [d_model, mlp]), nn.Dropout(dropout),
                                             nn.LayerNorm(mlp))
            sizes = [mlp + n_static, *decoder]
            self.decoder = nn.Sequential(*_mlp(nn, sizes), nn.Linear(sizes[-1], n_classes))

        def forward(self, series, static):
            batch, steps, _ = series.shape
            x = self.embed(series) + self.position
            keys = self.key(x).view(batch, steps, self.n_head, self.d_k)
            scores = torch.einsum("bthk,hk->bht", keys, self.query) / math.sqrt(self.d_k)
            attention = self.attn_dropout(scores.softmax(dim=-1))
            values = x.view(batch, steps, self.n_head, -1)
            heads = torch.einsum("bht,bthv->bhv", attention, values).reshape(batch, -1)
            return self.decoder(torch.cat([self.encoder_mlp(heads), static], dim=1))

    return {"tempcnn": TempCNN, "lighttae": LightTAE}


def build_network(config: dict):
    """A new torch module from an architecture `config` (`kind` + constructor arguments)."""
    arguments = dict(config)
    return _networks()[arguments.pop("kind")](**arguments)


# --- training helpers ----------------------------------------------------------------------


def validation_split(codes: np.ndarray, fraction: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, validation) indices: `fraction` of each class with 2 samples or more
    (at least one, never all) goes to validation."""
    train, val = [], []
    for k in np.unique(codes):
        members = rng.permutation(np.flatnonzero(codes == k))
        n_val = min(max(round(fraction * len(members)), 1), len(members) - 1) if fraction else 0
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _batches(order: np.ndarray, size: int):
    """Mini-batches of `order`; a last batch of one sample (which BatchNorm rejects) is
    dropped."""
    for start in range(0, len(order), size):
        batch = order[start:start + size]
        if len(batch) > 1 or len(order) == 1:
            yield batch


@contextmanager
def _progress(enabled: bool, description: str, total: int):
    """Yield `update(info)`: advance a rich progress bar by one epoch (no-op if disabled)."""
    if not enabled:
        yield lambda info: None
        return

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task(description, total=total, info="")
        yield lambda info: progress.update(task, advance=1, info=info)


# --- estimators ----------------------------------------------------------------------------


class _DeepClassifier(ClassifierMixin, BaseEstimator):
    """Shared fit / predict / pickling of the deep temporal classifiers."""

    _name = "deep"

    def _architecture(self, layout: Layout) -> dict:
        raise NotImplementedError

    # fitting

    def fit(self, X, y):
        """Fit on (n, F) features `X` (columns named by `feature_names`) and labels `y`."""
        torch = _require_torch(self._name)
        names = self._names(X)
        x = check_array(X, dtype=np.float32)
        check_classification_targets(y)
        if len(names) != x.shape[1]:
            raise ConfigError(f"{self._name}: {len(names)} feature_names for "
                              f"{x.shape[1]} features")
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        self.feature_names_ = names
        self.n_features_in_ = x.shape[1]
        self.layout_ = temporal_layout(names, canonical=True)
        series, statics = self.layout_.series(x), self.layout_.statics(x)
        self.norm_ = fit_normalization(self.layout_, series, statics)
        series, statics = normalize(self.layout_, self.norm_, x)
        self.architecture_ = self._architecture(self.layout_)
        seed = self._seed()
        device = _device(torch, self.device)
        with _torch_settings(torch, self.n_threads, device.type == "cpu"), \
                torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = build_network(self.architecture_).to(device)
            self._train(torch, module, series, statics, codes, np.random.default_rng(seed))
        self.module_ = module.cpu().eval()
        return self

    def _seed(self) -> int:
        if isinstance(self.random_state, (int, np.integer)):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(2**31 - 1))

    def _names(self, X) -> list[str]:
        if self.feature_names is not None:
            return [str(n) for n in self.feature_names]
        if hasattr(X, "columns"):
            return [str(c) for c in X.columns]
        log.warning("%s: no feature_names; the %d features are read as one series",
                    self._name, np.shape(X)[1])
        return [f"x{i}" for i in range(np.shape(X)[1])]  # undated: one series of F steps

    def _train(self, torch, module, series, statics, codes, rng) -> None:
        """Adam on cross-entropy; early stopping on the validation loss, best weights kept."""
        device = next(module.parameters()).device
        data = [torch.as_tensor(a, device=device) for a in (series, statics, codes)]
        train, val = validation_split(codes, self.validation_fraction, rng)
        optimizer = torch.optim.Adam(module.parameters(), lr=self.learning_rate,
                                     weight_decay=self.weight_decay)
        epochs = self.epochs if len(self.classes_) > 1 else 0
        best, best_state, wait, self.history_ = math.inf, None, 0, []
        with _progress(self.verbose, self._name, epochs) as update:
            for epoch in range(1, epochs + 1):
                loss = self._epoch(torch, module, optimizer, data, rng.permutation(train))
                val_loss, val_acc = self._evaluate(torch, module, data, val)
                self.history_.append({"epoch": epoch, "loss": loss, "val_loss": val_loss,
                                      "val_accuracy": val_acc})
                update(f"loss {loss:.4f} val acc {val_acc:.3f}")
                if len(val) and val_loss < best:
                    best, wait, self.best_epoch_ = val_loss, 0, epoch
                    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
                elif len(val) and (wait := wait + 1) >= self.patience:
                    break
        if best_state is not None:
            module.load_state_dict(best_state)
        self.n_epochs_ = len(self.history_)
        if best_state is None:
            self.best_epoch_ = self.n_epochs_
        log.debug("%s: %d epochs, best %d", self._name, self.n_epochs_, self.best_epoch_)

    def _epoch(self, torch, module, optimizer, data, order) -> float:
        """One pass over the training samples in `order`; returns the mean loss."""
        module.train()
        total = 0.0
        for batch in _batches(order, self.batch_size):
            index = torch.as_tensor(batch, device=data[0].device)
            series, statics, target = (d[index] for d in data)
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(module(series, statics), target)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        return total / max(len(order), 1)

    def _evaluate(self, torch, module, data, val) -> tuple[float, float]:
        """(loss, accuracy) on the validation samples (NaN without any)."""
        if not len(val):
            return math.nan, math.nan
        module.eval()
        loss, correct = 0.0, 0
        with torch.inference_mode():
            for batch in _batches(val, PREDICT_BATCH):
                index = torch.as_tensor(batch, device=data[0].device)
                series, statics, target = (d[index] for d in data)
                logits = module(series, statics)
                loss += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
                correct += int((logits.argmax(dim=1) == target).sum())
        return loss / len(val), correct / len(val)

    # prediction

    def predict_proba(self, X) -> np.ndarray:
        """float64 (n, C) class probabilities, in the order of `classes_`."""
        check_is_fitted(self, "module_")
        torch = _require_torch(self._name)
        x = self._features(X)
        out = np.empty((len(x), len(self.classes_)), np.float64)
        device = _device(torch, self.device)
        module = self.module_.to(device).eval()
        with _torch_settings(torch, self.n_threads), torch.inference_mode():
            for start in range(0, len(x), PREDICT_BATCH):
                chunk = normalize(self.layout_, self.norm_, x[start:start + PREDICT_BATCH])
                tensors = [torch.as_tensor(a, device=device) for a in chunk]
                logits = module(*tensors).double()
                out[start:start + len(chunk[0])] = logits.softmax(dim=1).cpu().numpy()
        return out

    def predict(self, X) -> np.ndarray:
        """The most probable class of each sample."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def _features(self, X) -> np.ndarray:
        """`X` as float32 (n, F) in the fitted column order (a DataFrame holding the fitted
        names in another order is reordered)."""
        if hasattr(X, "columns") and list(map(str, X.columns)) != self.feature_names_ \
                and set(map(str, X.columns)) == set(self.feature_names_):
            X = X[[c for c in self.feature_names_]]
        x = check_array(X, dtype=np.float32)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"{self._name}: X has {x.shape[1]} features, the model was fitted "
                             f"on {self.n_features_in_}")
        return x

    # pickling: the module travels as its state_dict (CPU tensors) and is rebuilt on load

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: object.__getstate__ gives __dict__
        module = state.pop("module_", None)
        if module is not None:
            state["module_state_"] = {k: v.detach().cpu().clone()
                                      for k, v in module.state_dict().items()}
        return state

    def __setstate__(self, state):
        weights = state.pop("module_state_", None)
        super().__setstate__(state)
        if weights is not None:
            _require_torch(self._name)
            module = build_network(self.architecture_)
            module.load_state_dict(weights)
            self.module_ = module.eval()


class TempCNNClassifier(_DeepClassifier):
    """TempCNN (Pelletier et al. 2019): 1D convolutions over the dates of a pixel's series.

    Architecture: 3 x [Conv1d(`kernel_size`, `filters`) + BN + ReLU + Dropout(`dropout`)],
    flatten, with the static features joined, Dense(`hidden`) + BN + ReLU +
    Dropout(`head_dropout`), softmax. Set `feature_names` to the columns of X (see
    `temporal_layout`)."""

    _name = "tempcnn"

    def __init__(self, feature_names=None, epochs=100, batch_size=256, learning_rate=1e-3,
                 weight_decay=1e-4, patience=10, validation_fraction=0.1, random_state=0,
                 device="auto", n_threads=1, verbose=True, filters=64, kernel_size=5,
                 hidden=256, dropout=0.2, head_dropout=0.5):
        self.feature_names = feature_names
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads
        self.verbose = verbose
        self.filters = filters
        self.kernel_size = kernel_size
        self.hidden = hidden
        self.dropout = dropout
        self.head_dropout = head_dropout

    def _architecture(self, layout: Layout) -> dict:
        return {"kind": "tempcnn", "n_channels": len(layout.channels),
                "n_steps": len(layout.days), "n_static": len(layout.static),
                "n_classes": len(self.classes_), "filters": self.filters,
                "kernel_size": self.kernel_size, "hidden": self.hidden,
                "dropout": self.dropout, "head_dropout": self.head_dropout}


class LightTAEClassifier(_DeepClassifier):
    """L-TAE (Garnot & Landrieu 2020): lightweight temporal attention over the dates.

    Each date's channels are embedded linearly to `d_model`, plus a sinusoidal encoding of the
    date (days since the first date); each of `n_head` heads has one learnt master query (keys of
    size `d_k`) that attends over the dates and pools its `d_model / n_head` slice of the
    embeddings; the heads go through an MLP (`mlp`), then, with the static features joined,
    through the decoder MLP (`decoder`) to the softmax. Set `feature_names` to the columns of X
    (see `temporal_layout`)."""

    _name = "lighttae"

    def __init__(self, feature_names=None, epochs=100, batch_size=256, learning_rate=1e-3,
                 weight_decay=1e-4, patience=10, validation_fraction=0.1, random_state=0,
                 device="auto", n_threads=1, verbose=True, d_model=128, n_head=16, d_k=8,
                 mlp=128, decoder=(64, 32), dropout=0.2, attn_dropout=0.1, period=1000.0):
        self.feature_names = feature_names
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads
        self.verbose = verbose
        self.d_model = d_model
        self.n_head = n_head
        self.d_k = d_k
        self.mlp = mlp
        self.decoder = decoder
        self.dropout = dropout
        self.attn_dropout = attn_dropout
        self.period = period

    def _architecture(self, layout: Layout) -> dict:
        if self.d_model % self.n_head:
            raise ConfigError(f"models.params: d_model ({self.d_model}) must be a multiple of "
                              f"n_head ({self.n_head})")
        return {"kind": "lighttae", "n_channels": len(layout.channels),
                "n_static": len(layout.static), "n_classes": len(self.classes_),
                "days": [float(d) for d in layout.days], "d_model": self.d_model,
                "n_head": self.n_head, "d_k": self.d_k, "mlp": self.mlp,
                "decoder": tuple(self.decoder), "dropout": self.dropout,
                "attn_dropout": self.attn_dropout, "period": self.period}
