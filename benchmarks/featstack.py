"""A generated feature stack for the classification benchmarks (issue 8), written in a
streaming way (one 256-row x 512-column piece at a time), so that its generator stays small
whatever the image size.

What is written under `folder`:
- `userfeat/<TILE>/stack.tif`: `features` float32 bands (default 156 = 12 dates x 13 channels,
  named `d01_c01` ...), tiled 256 x 256, band-interleaved, uncompressed, in UTM 31N at 10 m;
- `truth.tif`: the class (1..classes, uint8) of every pixel;
- `ground_truth.gpkg`: a share of the parcels as rectangles (one pixel inside their edges), field
  `code`: what geoclass samples its learning pixels from;
- `config.yml`: a geoclass configuration whose only input is `chain.user_feat_path` (+ pattern
  `stack`): a cube of user features only, chunk 512 px, 2000 learning pixels per class drawn from
  half of the polygons (`strategy: constant`), probabilities off, the default classifier.

The scene: parcels are jittered rectangles (12 to 48 px sides), each with one class drawn
uniformly. Class c has a mean temporal profile per channel (base + amplitude x sine over the
dates); classes come in similar pairs (the second a small perturbation of the first), so that
they are confusable. A parcel's pixels share a parcel effect (gain on the profile + a low-rank
offset); every pixel adds a low-rank temporal noise and an independent noise. With the default
noise levels a random forest (100 trees, depth 25, min 5 per leaf) trained on 20000 pixels has
an overall accuracy of about 0.91 (see RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

TILE = "T31TCJ"
CRS = "EPSG:32631"
RES = 10.0
ORIGIN = (300000.0, 4900000.0)
BLOCK = 256
PIECE_COLS = 512
LATENT = 6


@dataclass
class Layout:
    """Parcels as row strips, each cut into columns: pixel -> parcel id by two searchsorted."""

    size: int
    strip_top: np.ndarray  # (S + 1,) first row of each strip, then size
    strip_cols: list[np.ndarray]  # per strip: first column of each parcel, then size
    strip_first: np.ndarray  # (S,) id of the first parcel of each strip
    classes: np.ndarray  # (P,) class of each parcel, 1..K

    @property
    def parcels(self) -> int:
        return len(self.classes)

    def ids(self, row0: int, rows: int, col0: int, cols: int) -> np.ndarray:
        """Parcel id of every pixel of a window, int32 (rows, cols)."""
        out = np.empty((rows, cols), np.int32)
        columns = np.arange(col0, col0 + cols)
        for i, row in enumerate(range(row0, row0 + rows)):
            strip = np.searchsorted(self.strip_top, row, side="right") - 1
            out[i] = self.strip_first[strip] + np.searchsorted(
                self.strip_cols[strip], columns, side="right") - 1
        return out

    def boxes(self):
        """(parcel id, row0, row1, col0, col1) of every parcel."""
        for strip in range(len(self.strip_first)):
            r0, r1 = self.strip_top[strip], self.strip_top[strip + 1]
            cols = self.strip_cols[strip]
            for k in range(len(cols) - 1):
                yield self.strip_first[strip] + k, r0, r1, cols[k], cols[k + 1]


def _cuts(rng: np.random.Generator, size: int, low: int = 12, high: int = 48) -> np.ndarray:
    edges = [0]
    while edges[-1] < size:
        edges.append(edges[-1] + int(rng.integers(low, high + 1)))
    edges[-1] = size
    if edges[-1] - edges[-2] < low // 2 and len(edges) > 2:  # no sliver at the end
        del edges[-2]
    return np.asarray(edges, np.int64)


def make_layout(size: int, classes: int, seed: int) -> Layout:
    rng = np.random.default_rng([seed, 1])
    tops = _cuts(rng, size)
    cols = [_cuts(rng, size) for _ in range(len(tops) - 1)]
    counts = np.array([len(c) - 1 for c in cols])
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    labels = rng.integers(1, classes + 1, counts.sum()).astype(np.uint8)
    return Layout(size, tops, cols, first, labels)


@dataclass
class Model:
    """The generative model of the features."""

    mean: np.ndarray  # (K, F) class profiles
    parcel_load: np.ndarray  # (L, F)
    pixel_load: np.ndarray  # (L, F)
    noise: float
    gain: float


def make_model(features: int, classes: int, seed: int, noise: float = 0.05,
               parcel: float = 0.015, pixel: float = 0.03, gain: float = 0.04) -> Model:
    rng = np.random.default_rng([seed, 2])
    channels = 13 if features % 13 == 0 else 1
    dates = features // channels
    t = np.arange(dates) / max(1, dates)
    mean = np.empty((classes, channels, dates))
    for k in range(classes):
        if k % 2 == 1:  # the twin of class k - 1: a small perturbation
            twin = mean[k - 1]
            mean[k] = twin + rng.normal(0, 0.035, (channels, 1)) \
                + 0.03 * np.sin(2 * np.pi * t + rng.uniform(0, 2 * np.pi))[None]
            continue
        base = rng.uniform(0.05, 0.45, (channels, 1))
        amp = rng.uniform(0.0, 0.25, (channels, 1))
        phase = rng.uniform(0, 2 * np.pi) + rng.normal(0, 0.3, (channels, 1))
        mean[k] = base + amp * np.sin(2 * np.pi * t[None] + phase)
    smooth = np.exp(-0.5 * ((t[:, None] - t[None]) / 0.15) ** 2)  # temporally smooth loads

    def loads(scale):
        raw = rng.normal(0, 1, (LATENT, channels, dates)) @ smooth
        raw /= np.sqrt((raw**2).mean())
        return (scale * raw).reshape(LATENT, -1).astype(np.float32)

    return Model(mean.reshape(classes, -1).astype(np.float32), loads(parcel), loads(pixel),
                 noise, gain)


def feature_piece(layout: Layout, model: Model, parcel_effects, row0, rows, col0, cols,
                  seed: int) -> np.ndarray:
    """The features of one window: float32 (F, rows, cols)."""
    rng = np.random.default_rng([seed, 3, row0, col0])
    ids = layout.ids(row0, rows, col0, cols).ravel()
    gain, offset = parcel_effects
    cls = layout.classes[ids].astype(np.intp) - 1
    n, f = ids.size, model.mean.shape[1]
    x = model.mean[cls] * gain[ids, None]
    x += offset[ids]
    x += rng.standard_normal((n, LATENT), np.float32) @ model.pixel_load
    x += model.noise * rng.standard_normal((n, f), np.float32)
    return np.ascontiguousarray(x.T).reshape(f, rows, cols)


def parcel_effects(layout: Layout, model: Model, seed: int):
    rng = np.random.default_rng([seed, 4])
    gain = (1 + model.gain * rng.standard_normal(layout.parcels)).astype(np.float32)
    offset = rng.standard_normal((layout.parcels, LATENT), np.float32) @ model.parcel_load
    return gain, offset


def write_stack(folder: Path, size: int, features: int = 156, classes: int = 10, seed: int = 0,
                gt_share: float = 0.4, per_class: int = 2000, chunk: int = 512) -> Path:
    """Write the stack, the truth, the ground truth and the config; returns the config path."""
    import geopandas as gpd
    import rasterio
    import shapely
    import yaml
    from affine import Affine
    from rasterio.windows import Window

    folder = Path(folder)
    (folder / "userfeat" / TILE).mkdir(parents=True, exist_ok=True)
    transform = Affine(RES, 0, ORIGIN[0], 0, -RES, ORIGIN[1])
    layout = make_layout(size, classes, seed)
    model = make_model(features, classes, seed)
    effects = parcel_effects(layout, model, seed)
    profile = {"driver": "GTiff", "width": size, "height": size, "crs": CRS,
               "transform": transform, "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK}
    stack = folder / "userfeat" / TILE / "stack.tif"
    names = [f"d{d + 1:02d}_c{c + 1:02d}" for c in range(13) for d in range(features // 13)] \
        if features % 13 == 0 else [f"f{i:03d}" for i in range(features)]
    with rasterio.Env(GDAL_CACHEMAX=512), \
            rasterio.open(stack, "w", count=features, dtype="float32", interleave="band",
                          BIGTIFF="IF_SAFER", **profile) as dst, \
            rasterio.open(folder / "truth.tif", "w", count=1, dtype="uint8", nodata=0,
                          compress="deflate", **profile) as truth:
        for i, name in enumerate(names, start=1):
            dst.set_band_description(i, name)
        for row0 in range(0, size, BLOCK):
            rows = min(BLOCK, size - row0)
            for col0 in range(0, size, PIECE_COLS):
                cols = min(PIECE_COLS, size - col0)
                window = Window(col0, row0, cols, rows)
                dst.write(feature_piece(layout, model, effects, row0, rows, col0, cols, seed),
                          window=window)
                ids = layout.ids(row0, rows, col0, cols)
                truth.write(layout.classes[ids][None], window=window)
    rng = np.random.default_rng([seed, 5])
    boxes, codes = [], []
    for pid, r0, r1, c0, c1 in layout.boxes():
        if r1 - r0 < 4 or c1 - c0 < 4 or rng.random() >= gt_share:
            continue
        x0, y0 = transform * (c0 + 1, r0 + 1)
        x1, y1 = transform * (c1 - 1, r1 - 1)
        boxes.append(shapely.box(x0, y1, x1, y0))
        codes.append(int(layout.classes[pid]))
    gt = gpd.GeoDataFrame({"code": codes}, geometry=boxes, crs=CRS)
    gt.to_file(folder / "ground_truth.gpkg", driver="GPKG")
    config = {
        "chain": {"output_path": "out", "list_tile": [TILE], "user_feat_path": "userfeat",
                  "ground_truth": "ground_truth.gpkg", "data_field": "code", "ratio": 0.5,
                  "random_seed": seed},
        "user_feat": {"patterns": ["stack"]},
        "sampling": {"sample_selection": {"sampler": "random", "strategy": "constant",
                                          "strategy.constant.nb": per_class}},
        "models": {"classifier": "random_forest", "params": {}},
        "classification": {"enable_probability_map": False},
        "dask": {"chunk_size": chunk},
    }
    path = folder / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--features", type=int, default=156)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_stack(args.folder, args.size, args.features, args.classes, args.seed,
                      chunk=args.chunk))


if __name__ == "__main__":
    main()
