"""Write examples/demo.ipynb (without outputs) from the cells below: the notebook is kept as
code here, reviewed as code, and `tests/test_notebook.py` checks that the committed notebook
is what this script writes, then executes it.

    python examples/make_demo_notebook.py
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

CELLS = [
    ("md", """\
# geoclass: a land-cover map in a notebook

The demo scene (generated: one Sentinel-2 tile in THEIA's layout, ground-truth polygons, a
nomenclature and a colour table) through the chain, step by step, on a dask cluster:

1. open the observation cube **lazily** and plot the NDVI profile of a few polygons;
2. train one model per region;
3. classify **lazily** (only the blocks a plot needs are computed) and show the map with its
   palette;
4. the accuracy table of the validation polygons.

On a Pangeo hub, connect to your cluster (`dask_gateway`, or `Client("tcp://...")`) instead
of the local one, and put `chain.output_path` (and the inputs) on an object store, e.g.
`s3://bucket/run`: the cubes, samples, models and COGs go there, credentials come from the
environment (see `deploy/README.md`)."""),
    ("code", """\
import os
import tempfile
from pathlib import Path

import geopandas as gpd
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from distributed import Client
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.patches import Patch

import geoclass
from geoclass.testing.synth import synth

# where the scene and the run go: GEOCLASS_NOTEBOOK_DIR if set, else a temporary folder
work = Path(os.environ.get("GEOCLASS_NOTEBOOK_DIR") or tempfile.mkdtemp(prefix="geoclass-"))
config_path = synth(work / "scene", tiles=1, size=128, dates=8, classes=5, regions=1, seed=0)
config = geoclass.load_config(config_path)
# a LocalCluster of threads; on a hub: Client(gateway_cluster) or Client("tcp://scheduler:8786")
client = Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0")
tile = config.chain.list_tile[0]
print(config.chain.output_path, tile, client.dashboard_link)"""),
    ("md", """\
## 1. The cube, lazily

`open_cubes` describes every tile's observations straight from the input files: nothing is
read until a value is needed. `features` is the lazy (feature, y, x) view the classifier sees:
gap-filled reflectances and indices on a regular date grid."""),
    ("code", """\
cube = geoclass.open_cubes(config)[tile]
ndvi = cube.features.sel(feature=[f for f in cube.features["feature"].values
                                  if f.startswith("NDVI_")])
ndvi"""),
    ("md", """\
The NDVI profile of one polygon per class: the mean over the pixels inside it, computed only
over the polygon's bounding box (a few dask blocks)."""),
    ("code", """\
truth = gpd.read_file(config.chain.ground_truth).to_crs(cube.rio.crs)
field = config.chain.data_field
dates = pd.to_datetime([f.split("_", 1)[1] for f in ndvi["feature"].values])
fig, ax = plt.subplots(figsize=(7, 3.5))
for label, polygons in truth.groupby(field):
    polygon = polygons.geometry.iloc[polygons.area.argmax()]  # the class's largest polygon
    inside = ndvi.rio.clip([polygon], drop=True)  # rioxarray: only the blocks it touches
    profile = inside.mean(dim=("y", "x")).compute()
    ax.plot(dates, profile, marker="o", label=str(label))
ax.set_ylabel("NDVI (polygon mean)")
ax.legend(fontsize="small", ncol=2)
fig.autofmt_xdate()"""),
    ("md", """\
## 2. Training

`train` runs what it needs first (storing the cubes, drawing the samples), then fits one model
per (region, run) on the cluster. Each step is skipped when it is up to date."""),
    ("code", """\
models = geoclass.train(config)
learn = geoclass.read_samples(config, run=0)
print(dict(models))
learn.groupby("code").size().rename("learning pixels").to_frame().T"""),
    ("md", """\
## 3. The map, lazily

`classify_lazy` gives each tile's map as lazy arrays: plotting a window computes only the
blocks under it. The palette is the colour table of the configuration."""),
    ("code", """\
maps = geoclass.classify_lazy(config, run=0, models=models)
classes = geoclass.load_class_table(config)
codes = classes.codes
palette = ListedColormap([np.array(classes.colors[c]) / 255 for c in codes])
norm = BoundaryNorm([c - 0.5 for c in codes] + [codes[-1] + 0.5], len(codes))
window = maps[tile].classification[:96, :96]  # 96 x 96 px: the blocks under it only
fig, ax = plt.subplots(figsize=(5, 5))
ax.imshow(np.where(window.values == 0, np.nan, window.values), cmap=palette, norm=norm,
          interpolation="nearest")
ax.set_axis_off()
ax.legend(handles=[Patch(color=palette(i), label=classes.names[c]) for i, c in enumerate(codes)],
          loc="upper left", bbox_to_anchor=(1, 1), fontsize="small")"""),
    ("md", """\
## 4. Accuracy

`run_chain` finishes the chain (mosaic, COGs, validation, report): the confusion matrix of
every validation pixel, overall accuracy, kappa, and precision / recall / F1 per class."""),
    ("code", """\
metrics = geoclass.run_chain(config)
scores = metrics["runs"][0]["scores"]
print(f"overall accuracy {scores['overall_accuracy']:.3f}, kappa {scores['kappa']:.3f}")
final = Path(str(config.chain.output_path)) / "final"
pd.read_csv(final / "confusion_seed_0.csv", index_col=0)"""),
    ("code", """\
per_class = pd.DataFrame(scores["per_class"]).T
per_class"""),
    ("code", """\
client.close()"""),
]


def notebook() -> nbformat.NotebookNode:
    cells = [new_markdown_cell(text) if kind == "md" else new_code_cell(text)
             for kind, text in CELLS]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python",
                                 "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    for number, cell in enumerate(nb.cells):  # stable ids: the file does not change
        cell["id"] = f"cell-{number}"
    return nb


def main() -> None:
    nbformat.write(notebook(), HERE / "demo.ipynb")


if __name__ == "__main__":
    main()
