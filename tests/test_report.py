"""The HTML accuracy report: content, escaping, class areas, quicklook and a headless browser."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import rasterio
from affine import Affine
from scipy import stats as st

from geoclass import report
from geoclass.kernels.areas import area_adjusted_accuracy, combine_runs
from geoclass.report import class_areas, class_colors, quicklook, write_report

CLASSES = [
    {"code": 1, "name": "Forest", "color": [34, 139, 34]},
    {"code": 2, "name": "Water & wetlands", "color": [30, 144, 255]},
    {"code": 3, "name": "Crops <maize> $5", "color": None},
]
CONFUSIONS = [
    [[50, 3, 2], [4, 40, 1], [2, 2, 46]],
    [[49, 4, 2], [2, 42, 1], [2, 1, 47]],
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEADINGS = ["Summary", "Warnings", "Classification map", "Class areas", "Accuracy per run",
            "Confusion matrix (run 1)", "Per-class F1", "Settings"]


def write_map(path: Path, codes: np.ndarray, crs: str = "EPSG:32631", **profile) -> Path:
    """A single-band classification GeoTIFF with 10 m pixels."""
    options = dict(driver="GTiff", height=codes.shape[0], width=codes.shape[1], count=1,
                   dtype=codes.dtype, crs=crs, transform=Affine(10, 0, 300000, 0, -10, 4900000),
                   nodata=0)
    options.update(profile)
    with rasterio.open(path, "w", **options) as dst:
        dst.write(codes, 1)
    return path


def map_codes(height: int = 200, width: int = 300) -> np.ndarray:
    """Three classes in irregular patches with a nodata (0) border."""
    rng = np.random.default_rng(0)
    codes = np.ones((height, width), dtype=np.uint8)
    codes[:, width // 3:] = 2
    codes[rng.random((height, width)) < 0.3] = 3
    codes[:10], codes[-10:], codes[:, :10], codes[:, -10:] = 0, 0, 0, 0
    return codes


def scores(confusion: list[list[int]]) -> dict:
    """Scores of a confusion matrix (rows reference, columns prediction)."""
    cm = np.asarray(confusion, dtype=float)
    n = cm.sum()
    oa = np.trace(cm) / n
    expected = (cm.sum(0) * cm.sum(1)).sum() / n**2
    precision, recall = np.diag(cm) / cm.sum(0), np.diag(cm) / cm.sum(1)
    f1 = 2 * precision * recall / (precision + recall)
    per_class = [{"code": c["code"], "name": c["name"], "precision": float(precision[i]),
                  "recall": float(recall[i]), "f1": float(f1[i]), "support": int(cm[i].sum()),
                  "predicted": int(cm[:, i].sum())} for i, c in enumerate(CLASSES)]
    return {"overall_accuracy": float(oa), "kappa": float((oa - expected) / (1 - expected)),
            "macro_f1": float(f1.mean()), "n_samples": int(n), "per_class": per_class}


def summarise(runs: list[dict]) -> dict:
    """Mean, standard deviation and 95 % CI half-width of each score across runs."""
    out = {"n_runs": len(runs)}
    for key in ("overall_accuracy", "kappa", "macro_f1"):
        values = np.array([r["scores"][key] for r in runs])
        std = float(values.std(ddof=1))
        half = float(st.t.ppf(0.975, len(values) - 1) * std / np.sqrt(len(values)))
        out[key] = {"mean": float(values.mean()), "std": std, "ci95": half}
    return out


@pytest.fixture
def built(tmp_path) -> dict:
    """A map, its class areas and the report written from them."""
    codes = map_codes()
    map_path = write_map(tmp_path / "map.tif", codes, tiled=True, blockxsize=64, blockysize=64)
    runs = [{"run": i + 1, "scores": scores(cm), "confusion": cm}
            for i, cm in enumerate(CONFUSIONS)]
    summary = summarise(runs)
    fusion = scores([[53, 1, 1], [1, 44, 0], [1, 1, 48]])
    areas = class_areas(map_path, [c["code"] for c in CLASSES])
    settings = {"chain": {"output": tmp_path / "out", "runs": 2, "ratio": 0.5},
                "classifier": {"name": "rf", "params": {"n_estimators": 100}},
                "tiles": ("T31TCJ", "T31TDJ"), "seed": np.int64(3)}
    warnings = ["Class 3 has <b>few</b> samples in region 2", "Tile T31TDJ: 12 % cloudy"]
    path = write_report(tmp_path / "report" / "report.html", title="Run <demo>",
                        settings=settings, classes=CLASSES, map_path=map_path, runs=runs,
                        summary=summary, fusion=fusion, areas=areas, warnings=warnings)
    return {"path": path, "codes": codes, "areas": areas, "summary": summary, "fusion": fusion,
            "html": path.read_text(encoding="utf-8")}


def test_class_areas_are_pixel_counts_in_hectares(built):
    counts = {code: int((built["codes"] == code).sum()) for code in (1, 2, 3)}
    assert all(counts.values())
    assert built["areas"] == pytest.approx({code: n * 0.01 for code, n in counts.items()})


def test_class_areas_read_window_by_window(tmp_path, monkeypatch):
    codes = (np.arange(190 * 170, dtype=np.uint16).reshape(190, 170) % 7) * 300
    map_path = write_map(tmp_path / "m.tif", codes, tiled=True, blockxsize=32, blockysize=32)
    seen = []
    windows = report._windows
    monkeypatch.setattr(report, "WINDOW_SIDE", 50)
    monkeypatch.setattr(report, "_windows", lambda src, side: seen.extend(windows(src, side))
                        or seen)
    areas = class_areas(map_path, [0, 300, 1800, 5])
    expected = {c: (codes == c).sum() * 0.01 for c in (0, 300, 1800, 5)}
    assert areas == pytest.approx(expected)
    assert len(seen) > 1 and all(w.height <= 50 and w.width <= 50 for w in seen)
    covered = np.zeros(codes.shape, dtype=int)
    for w in seen:
        covered[w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width] += 1
    assert (covered == 1).all()


def test_class_areas_refuse_geographic_crs(tmp_path):
    map_path = write_map(tmp_path / "geo.tif", map_codes(20, 30), crs="EPSG:4326",
                         transform=Affine(0.001, 0, 3, 0, -0.001, 44))
    with pytest.raises(ValueError, match="projected CRS"):
        class_areas(map_path, [1, 2, 3])


def test_quicklook_is_decimated(tmp_path):
    codes = np.repeat(np.arange(1, 5, dtype=np.uint16) * 1000, 500)[None, :].repeat(2000, 0)
    codes = np.concatenate([codes, codes], axis=1)  # 2000 x 4000
    map_path = write_map(tmp_path / "big.tif", codes, tiled=True, compress="deflate")
    with rasterio.open(map_path, "r+") as dst:
        dst.build_overviews([2, 4, 8], rasterio.enums.Resampling.nearest)
    data, nodata = quicklook(map_path)
    assert data.shape == (400, 800) and data.dtype == np.uint16 and nodata == 0
    assert set(np.unique(data)) == {1000, 2000, 3000, 4000}


def test_report_is_self_contained(built):
    text = built["html"]
    path = built["path"]
    assert path.is_file() and sorted(p.name for p in path.parent.iterdir()) == ["report.html"]
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert "<script" not in text.lower() and "<link" not in text.lower()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 4  # map, areas, confusion matrix, per-class F1
    assert all(base64.b64decode(img).startswith(PNG_SIGNATURE) for img in images)


def test_report_content_and_escaping(built):
    text = built["html"]
    assert "Forest" in text and "Water &amp; wetlands" in text
    assert "Crops &lt;maize&gt; $5" in text and "<maize>" not in text
    assert "<title>Run &lt;demo&gt;</title>" in text
    oa = built["summary"]["overall_accuracy"]
    assert f"OA {oa['mean']:.3f} ± {oa['ci95']:.3f} (95 % CI, 2 runs)" in text
    assert f"Fused map: OA {built['fusion']['overall_accuracy']:.3f}" in text
    assert "&lt;b&gt;few&lt;/b&gt;" in text and "<b>few" not in text
    for hectares in built["areas"].values():
        assert f"{hectares:,.2f}" in text
    assert "n_estimators: 100" in text and "- T31TCJ" in text


def test_report_without_runs_or_map(tmp_path):
    path = write_report(tmp_path / "r.html", title="empty", settings={}, classes=CLASSES,
                        map_path=None, runs=[], summary=None, fusion=None, areas={}, warnings=[])
    text = path.read_text(encoding="utf-8")
    assert "No warnings" in text and "No validation runs" in text
    assert "data:image" not in text


class _Dom(HTMLParser):
    """Collects <h2> texts and <img> sources of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.images: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        self._in_h2 = self._in_h2 or tag == "h2"
        if tag == "h2":
            self.headings.append("")
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")

    def handle_endtag(self, tag):
        self._in_h2 = self._in_h2 and tag != "h2"

    def handle_data(self, data):
        if self._in_h2:
            self.headings[-1] += data


def _chromium() -> str:
    """Path of a Chromium-like browser, or skip the test."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium, chromium-browser or google-chrome on PATH "
                "(apt-get install -y chromium)")


def _browse(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the browser headless with its own profile folder."""
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
               f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _near(image: np.ndarray, rgb: tuple[float, float, float], tolerance: float = 3 / 255) -> bool:
    """Whether some pixel of an RGB(A) float image has colour `rgb`."""
    return bool((np.abs(image[..., :3] - np.asarray(rgb)) <= tolerance).all(axis=-1).any())


def test_report_renders_in_headless_chromium(built, tmp_path):
    browser = _chromium()
    url = built["path"].resolve().as_uri()
    shot = tmp_path / "shot.png"
    start = time.perf_counter()
    shown = _browse(browser, tmp_path / "profile", f"--screenshot={shot}",
                    "--window-size=1200,2000", url)
    dom = _browse(browser, tmp_path / "profile", "--dump-dom", url)
    print(f"chromium: screenshot + dump-dom in {time.perf_counter() - start:.1f} s")
    assert shown.returncode == 0 and dom.returncode == 0, shown.stderr[-2000:] + dom.stderr[-2000:]
    for line in (shown.stderr + dom.stderr).splitlines():
        if built["path"].name in line:
            assert "ERROR" not in line and "Failed to load" not in line, line
    parsed = _Dom()
    parsed.feed(dom.stdout)
    assert [h.strip() for h in parsed.headings] == HEADINGS
    assert len(parsed.images) == 4
    assert all(src.startswith("data:image/png;base64,") for src in parsed.images)
    assert shot.is_file() and shot.stat().st_size > 10_000
    image = matplotlib.image.imread(shot)
    assert image.shape[:2] == (2000, 1200) and image[..., :3].std() > 0
    for rgb in class_colors(CLASSES).values():
        assert _near(image, rgb), f"class colour {rgb} not on screen"


def _adjusted(codes: np.ndarray, confusion: list[list[int]]) -> dict:
    counts = [int((codes == c["code"]).sum()) for c in CLASSES]
    return area_adjusted_accuracy(confusion, counts, [c["code"] for c in CLASSES],
                                  pixel_area=0.01)


def test_report_with_adjusted_areas_uncertainty_smoothing_and_samples(tmp_path):
    codes = map_codes()
    map_path = write_map(tmp_path / "map.tif", codes)
    values = np.where(codes > 0, (np.arange(codes.size).reshape(codes.shape) % 10_001), 65535)
    uncertainty = write_map(tmp_path / "Uncertainty_margin_Seed_0.tif",
                            values.astype(np.uint16), nodata=65535)
    runs = [{"run": i, "scores": scores(cm), "confusion": cm, "isolated_pixels": 100 + i}
            for i, cm in enumerate(CONFUSIONS)]
    fused = [[53, 1, 1], [1, 44, 0], [1, 1, 48]]
    adjusted = _adjusted(codes, fused)
    smoothed = {"method": "majority", "runs": [
        {"run": i, "scores": scores(cm), "isolated_pixels": 7 + i}
        for i, cm in enumerate(CONFUSIONS)]}
    counts = {"runs": [0, 1], "per_class": [
        {"code": c["code"], "learn": [1000 + i, 2000 + i], "validation": [300 + i, 400 + i]}
        for i, c in enumerate(CLASSES)]}
    areas = {e["code"]: e["mapped_area"] for e in adjusted["per_class"]}
    path = write_report(tmp_path / "report.html", title="full", settings={}, classes=CLASSES,
                        map_path=map_path, runs=runs, summary=summarise(runs),
                        fusion=scores(fused), areas=areas, warnings=[],
                        adjusted_areas=adjusted, area_unit="ha",
                        area_source="map.tif, <the fusion>", area_design="a & b design",
                        uncertainty_path=uncertainty, uncertainty_measure="margin",
                        fusion_confusion=fused, smoothed=smoothed, sample_counts=counts,
                        version="9.8.7", area_summary=combine_runs(
                            [_adjusted(codes, cm) for cm in CONFUSIONS]))
    text = path.read_text(encoding="utf-8")
    parsed = _Dom()
    parsed.feed(text)
    assert [h.strip() for h in parsed.headings] == [
        "Summary", "Warnings", "Classification map", "Uncertainty", "Class areas",
        "Accuracy per run", "Confusion matrix (run 0)", "Confusion matrix (fused map)",
        "Smoothed maps (majority)", "Per-class F1", "Samples per class", "Settings"]
    assert len(parsed.images) == 6
    assert "by geoclass 9.8.7" in text
    assert "come from map.tif, &lt;the fusion&gt;." in text
    assert "Validation design assumed: a &amp; b design." in text
    assert "from Uncertainty_margin_Seed_0.tif" in text
    for entry in adjusted["per_class"]:
        assert f"<td>{entry['area']:.2f}</td><td>{entry['area_ci95']:.2f}</td>" in text
        assert f"<td>{entry['users_accuracy']:.3f}</td>" in text
    assert f"Area-weighted overall accuracy: {adjusted['overall_accuracy']:.3f}" in text
    assert "<td>100</td><td>7</td>" in text and "<td>101</td><td>8</td>" in text
    assert "<td>1002</td><td>302</td><td>2002</td><td>402</td>" in text
    assert "Crops &lt;maize&gt; $5" in text
    summary = combine_runs([_adjusted(codes, cm) for cm in CONFUSIONS])
    oa = summary["overall_accuracy"]
    assert f"Over the 2 runs (mean ± 95 % CI, Student's t): area-weighted overall accuracy " \
           f"{oa['mean']:.3f} ± {oa['ci95']:.3f}." in text
    area = summary["per_class"][1]["area"]
    assert f"<td>{area['mean']:.2f} ± {area['ci95']:.2f}</td>" in text
