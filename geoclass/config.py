"""The YAML configuration: pydantic models with iota2's vocabulary, loading and path resolution."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from geoclass import fs
from geoclass.errors import ConfigError


def _location(value: Any):
    if not isinstance(value, str | Path) and not hasattr(value, "__fspath__") \
            and not fs.is_url(value):
        raise ValueError("expected a path or a URL (s3://, gs://, az://, https://)")
    if isinstance(value, str) and not value.strip():
        raise ValueError("empty path")
    return fs.as_path(value)


# a local path (pathlib.Path) or an object-store URL (upath.UPath): see geoclass.fs
Location = Annotated[Path, PlainValidator(_location), PlainSerializer(str, return_type=str)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExternalSamples(_Section):
    """A table of labelled time series to learn from (CSV or Parquet; wide: one row per
    sample, or long: one row per sample and date), `chain.external_samples`."""

    path: Location
    label_field: str = "label"
    match: Literal["name", "position"] = "name"
    region_field: str | None = None
    id_field: str = "sample_id"
    date_field: str = "date"


class Chain(_Section):
    """iota2's `chain` section: where the inputs are and how runs are drawn."""

    output_path: Location
    list_tile: list[str]
    s2_path: Location | None = None
    s2_s2c_path: Location | None = None
    l8_path: Location | None = None
    l8_path_old: Location | None = None
    s1_path: Location | None = None
    series_path: Location | None = None
    stac_path: Location | None = None
    user_feat_path: Location | None = None
    ground_truth: Location | None = None
    data_field: str = "code"
    region_path: Location | None = None
    region_field: str = "region"
    region_tiles: dict[int, list[str]] | None = None
    nomenclature_path: Location | None = None
    color_table: Location | None = None
    spatial_resolution: float | None = Field(default=None, gt=0)
    ratio: float = Field(default=0.5, gt=0, lt=1)
    runs: int = Field(default=1, ge=1)
    random_seed: int = 0
    split_ground_truth: bool = True
    repair_geometries: bool = False
    proj: str | None = None
    external_samples: ExternalSamples | None = None
    ground_truth_role: Literal["learn_and_validate", "validation"] = "learn_and_validate"
    enable_autocontext: bool = False
    autocontext_iterations: int = Field(default=3, ge=1)
    autocontext_superpixel_size: int = Field(default=10, ge=2)
    autocontext_compactness: float = Field(default=1.0, gt=0)
    autocontext_features: list[str] | None = None

    @field_validator("list_tile", mode="before")
    @classmethod
    def _split_tiles(cls, value: Any) -> Any:
        # iota2 writes tiles as one space-separated string: 'T31TCJ T31TDJ'.
        if isinstance(value, str):
            return value.split()
        return value

    @field_validator("list_tile")
    @classmethod
    def _some_tile(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("lists no tile: name at least one, e.g. [T31TCJ] (or iota2's "
                             "'T31TCJ T31TDJ')")
        return value

    @model_validator(mode="after")
    def _regions_by_tile(self):
        """`region_tiles` (iota2's `multi_regions` model file): region -> its tiles, each
        tile in one region at most and in `list_tile`; not with `region_path`."""
        if self.region_tiles is None:
            return self
        if self.region_path is not None:
            raise ValueError("region_path and region_tiles both give the regions: keep one")
        problems, seen = [], {}
        for region, tiles in self.region_tiles.items():
            if region <= 0:
                problems.append(f"region {region}: regions are integers > 0 (0 is 'no region')")
            if not tiles:
                problems.append(f"region {region} has no tile")
            for tile in tiles:
                if tile in seen:
                    problems.append(f"tile {tile} is in regions {seen[tile]} and {region}")
                seen.setdefault(tile, region)
        unknown = [t for t in seen if t not in self.list_tile]
        if unknown:
            problems.append(f"tiles {', '.join(unknown)} are not in list_tile")
        if not self.region_tiles:
            problems.append("lists no region")
        if problems:
            raise ValueError("region_tiles: " + "; ".join(problems))
        return self

    def region_of_tile(self, tile: str) -> int:
        """With `region_tiles`: the region of `tile`, 0 when it is in none."""
        return next((r for r, tiles in (self.region_tiles or {}).items() if tile in tiles), 0)


class SensorOptions(_Section):
    """Per-sensor options: the regular date grid of the gap-filled series."""

    temporal_resolution: int | None = Field(default=10, ge=1)
    start_date: dt.date | None = None
    end_date: dt.date | None = None


class Sentinel1Options(SensorOptions):
    """Sentinel-1 files and date grid (shared by the ascending and descending series)."""

    temporal_resolution: int | None = Field(default=12, ge=1)
    pattern: str = "s1?_{tile}_{pol}_{orbit}_{date:%Y%m%dt%H%M%S}*.tif"
    polarisations: list[str] = Field(default=["VV", "VH"], min_length=1)
    orbits: list[Literal["ASC", "DES"]] = Field(default=["ASC", "DES"], min_length=1)
    db_input: bool = False
    nodata: float | None = 0


class Sensors(_Section):
    sentinel_2: SensorOptions = SensorOptions()
    landsat_8_old: SensorOptions = SensorOptions(temporal_resolution=16)
    sentinel_2_s2c: SensorOptions = SensorOptions()
    landsat_8: SensorOptions = SensorOptions(temporal_resolution=16)
    sentinel_1: Sentinel1Options = Sentinel1Options()


Resampling = Literal["nearest", "bilinear", "cubic", "average", "mode"]


def _check_range(value):
    if value is not None and value[0] > value[1]:
        raise ValueError("valid_range must be [low, high] with low <= high")
    return value


class SeriesOptions(SensorOptions):
    """Any dated raster series (`chain.series_path`); a null temporal_resolution keeps the
    native dates."""

    temporal_resolution: int | None = Field(default=None, ge=1)
    pattern: str | None = None
    band_names: list[str] = Field(default=["value"], min_length=1)
    valid_range: tuple[float, float] | None = None
    nodata: float | None = None
    scale: float = 1.0
    offset: float = 0.0
    mask_pattern: str | None = None
    resampling: Resampling = "nearest"
    prefix: str = ""
    index_bands: dict[Literal["green", "red", "nir", "swir"], str] = {}

    _range = field_validator("valid_range")(_check_range)


class StacOptions(SensorOptions):
    """A local STAC catalog or ItemCollection (`chain.stac_path`)."""

    bands: dict[str, str] = {}
    cloud_asset: str | None = None
    invalid_values: list[int] = [0, 1, 3, 8, 9, 10]
    nodata: float | None = 0
    scale: float | None = None
    offset: float | None = None
    valid_range: tuple[float, float] | None = None
    resampling: Resampling = "bilinear"
    prefix: str = ""
    index_bands: dict[Literal["green", "red", "nir", "swir"], str] = {
        "green": "B3", "red": "B4", "nir": "B8", "swir": "B11"}

    _range = field_validator("valid_range")(_check_range)


class Features(_Section):
    """Which features the cube holds besides the gap-filled reflectances."""

    indices: list[Literal["NDVI", "NDWI", "Brightness"]] = ["NDVI", "NDWI", "Brightness"]
    keep_reflectances: bool = True
    user_functions: list[str] = []

    @field_validator("user_functions")
    @classmethod
    def _dotted(cls, value: list[str]) -> list[str]:
        for name in value:
            if ":" not in name and "." not in name:
                raise ValueError(f"'{name}' is not 'package.module:function'")
        return value


class UserFeat(_Section):
    """iota2's `userFeat`: extra rasters per tile, selected by file-name patterns."""

    patterns: list[str] = []


Strategy = Literal["all", "byclass", "constant", "percent", "smallest", "total"]


class _Dotted(_Section):
    """Sections that accept iota2's dotted keys (`strategy.percent.p`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SelectionRule(_Dotted):
    """One sample-selection rule (iota2's `sampleSelection`)."""

    sampler: Literal["random", "periodic"] = "random"
    strategy: Strategy = "all"
    constant_nb: int | None = Field(default=None, alias="strategy.constant.nb", ge=1)
    percent_p: float | None = Field(default=None, alias="strategy.percent.p", gt=0, le=1)
    total_v: int | None = Field(default=None, alias="strategy.total.v", ge=1)
    byclass_in: dict[str, int] | None = Field(default=None, alias="strategy.byclass.in")

    @model_validator(mode="after")
    def _parameter_given(self):
        needed = {"constant": "constant_nb", "percent": "percent_p", "total": "total_v",
                  "byclass": "byclass_in"}.get(self.strategy)
        if needed and getattr(self, needed) is None:
            alias = type(self).model_fields[needed].alias
            raise ValueError(f"strategy '{self.strategy}' needs '{alias}'")
        return self


class ModelRule(SelectionRule):
    target_model: int


class SampleSelection(SelectionRule):
    per_model: list[ModelRule] = []

    def rule_for(self, region: int) -> SelectionRule:
        for rule in self.per_model:
            if rule.target_model == region:
                return rule
        return self


class SampleAugmentation(_Dotted):
    """iota2's `sampleAugmentation`: synthetic learning samples per region."""

    activate: bool = False
    target_models: list[int | Literal["all"]] = ["all"]
    strategy: Literal["replicate", "jitter", "smote"] = "replicate"
    jitter_stdfactor: float = Field(default=10, alias="strategy.jitter.stdfactor", gt=0)
    smote_neighbors: int = Field(default=5, alias="strategy.smote.neighbors", ge=1)
    samples_strategy: Literal["minNumber", "balance", "byClass"] = Field(
        default="balance", alias="samples.strategy")
    min_number: int | None = Field(default=None, alias="samples.strategy.minNumber", ge=1)
    by_class: dict[str, int] | None = Field(default=None, alias="samples.strategy.byClass")

    def applies_to(self, region: int) -> bool:
        return self.activate and ("all" in self.target_models or region in self.target_models)

    @model_validator(mode="after")
    def _parameter_given(self):
        if self.samples_strategy == "minNumber" and self.min_number is None:
            raise ValueError("samples.strategy 'minNumber' needs 'samples.strategy.minNumber'")
        if self.samples_strategy == "byClass" and self.by_class is None:
            raise ValueError("samples.strategy 'byClass' needs 'samples.strategy.byClass'")
        return self


class Sampling(_Section):
    sample_selection: SampleSelection = SampleSelection()
    sample_augmentation: SampleAugmentation = SampleAugmentation()
    cloud_threshold: int = Field(default=0, ge=0)


class CrossValidation(_Section):
    """iota2's scikit-learn hyper-parameter search: a grid, folds, folds grouped by polygon."""

    parameters: dict[str, list[Any]] = {}
    folds: int = Field(default=5, ge=2)
    grouped: bool = True


class Models(_Section):
    """The classifier trained for each (region, run): a short name or a dotted path."""

    classifier: str = "lightgbm"
    params: dict[str, Any] = {}
    standardization: bool = False
    cross_validation: CrossValidation | None = None
    # how a (region, run) model uses the cluster (geoclass.models.fitting.choose_path): auto
    # spreads a forest's trees when models are fewer than worker threads, and streams or
    # partitions tables above 512 MiB; true: always the distributed path; false: one task
    distributed: bool | Literal["auto"] = "auto"


class BoundaryFusion(_Section):
    """Fusion of the neighbouring regions' models near region boundaries (map units)."""

    enable: bool = False
    interior_buffer_size: float = Field(default=100.0, ge=0)
    exterior_buffer_size: float = Field(default=100.0, ge=0)
    epsilon: float = Field(default=1e-3, ge=0, lt=1)

    @model_validator(mode="after")
    def _some_buffer(self):
        if self.enable and self.interior_buffer_size + self.exterior_buffer_size <= 0:
            raise ValueError("interior_buffer_size + exterior_buffer_size must be > 0")
        return self


class MergeRuns(_Section):
    """iota2's `merge_final_classifications`: one map from the maps of every run."""

    enable: bool = False
    method: Literal["majorityvoting", "dempstershafer"] = "majorityvoting"
    undecided_label: int | None = Field(default=None, ge=1)
    dempstershafer_mob: Literal["precision", "recall", "accuracy", "kappa"] = "precision"


class Smoothing(_Section):
    """Spatial smoothing of each run's map into separate files: `bayes` smooths the class
    probabilities (sits_smooth: `window_size`, `neigh_fraction`, `smoothness`, one value or
    one per class by name or code) and labels each pixel by the highest smoothed one;
    `majority` is a mode filter of the class map (OTB's ClassificationMapRegularization:
    `radius`, `undecided_label`, `isolated_threshold`)."""

    method: Literal["bayes", "majority"] | None = None
    window_size: int = Field(default=9, ge=3)
    neigh_fraction: float = Field(default=0.5, gt=0, le=1)
    smoothness: float | dict[str, float] = 20.0
    radius: int = Field(default=1, ge=1)
    undecided_label: int | None = Field(default=None, ge=1)
    isolated_threshold: int | None = Field(default=None, ge=1)

    @field_validator("window_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"window_size must be odd, got {value}")
        return value

    @field_validator("smoothness")
    @classmethod
    def _positive(cls, value):
        values = value.values() if isinstance(value, dict) else [value]
        if any(v <= 0 for v in values):
            raise ValueError(f"smoothness must be positive, got {value}")
        return value

    @model_validator(mode="after")
    def _enough_neighbours(self):
        if self.method == "bayes" and self.neigh_fraction * self.window_size**2 < 2:
            raise ValueError("neigh_fraction x window_size^2 must keep at least 2 neighbours")
        return self


class Classification(_Section):
    enable_probability_map: bool = False
    boundary_fusion: BoundaryFusion = BoundaryFusion()
    merge_final_classifications: MergeRuns = MergeRuns()
    # per-pixel uncertainty maps (Uncertainty_<kind>_Seed_<run>.tif)
    uncertainty: list[Literal["entropy", "margin", "least"]] = []
    smoothing: Smoothing = Smoothing()

    @field_validator("uncertainty", mode="before")
    @classmethod
    def _one_kind(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("uncertainty")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"uncertainty lists a measure twice: {value}")
        return value

    @property
    def needs_probabilities(self) -> bool:
        """Whether the class probabilities are kept with the maps: for the probability COGs,
        the uncertainty maps and the Bayesian smoothing (and `geoclass suggest`)."""
        return (self.enable_probability_map or bool(self.uncertainty)
                or self.smoothing.method == "bayes")


class DaskSecurity(_Section):
    """TLS for the dask comms (`dask.security`, or the YAML file `--security` names): every
    connection is encrypted, and both ends must hold a certificate signed by `ca_file` (a
    client without one is refused). `cert` serves every role (client, scheduler, workers);
    `key`: its private key, unless it is inside `cert`."""

    ca_file: Path
    cert: Path
    key: Path | None = None

    def resolved(self, base_dir: Path) -> DaskSecurity:
        """The same, relative paths read from `base_dir`."""
        return self.model_copy(update={
            name: (base_dir / value).resolve()
            for name in ("ca_file", "cert", "key")
            if (value := getattr(self, name)) is not None and not value.is_absolute()})


class DaskOptions(_Section):
    scheduler: str | None = None
    workers: int | None = Field(default=None, ge=1)
    threads_per_worker: int | None = Field(default=None, ge=1)
    memory_limit: str | None = None
    chunk_size: int = Field(default=512, ge=16)
    # seconds during which every worker may stay paused (out of memory) before a step stops
    stall_timeout: float = Field(default=120, gt=0)
    # where the embedded LocalCluster's scheduler and workers listen (this machine only)
    host: str = "127.0.0.1"
    # its dashboard: this machine only, any free port; ":8787" opens it on every interface,
    # null turns it off
    dashboard_address: str | None = "127.0.0.1:0"
    # TLS with client certificates: "temporary" (a self-signed certificate made for the
    # LocalCluster, held in memory) or the certificates of a real cluster
    security: Literal["temporary"] | DaskSecurity | None = None
    # the LocalCluster's worker processes are forked from a process that has loaded geoclass
    # once (they start at once); false: each one starts a new Python (dask's spawn)
    fork_workers: bool = True


def parse_security(value: str | Path) -> Literal["temporary"] | DaskSecurity:
    """`--security`: "temporary", or a YAML file holding `ca_file`, `cert` and `key` (relative
    paths read from the file's folder)."""
    if str(value) == "temporary":
        return "temporary"
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"--security {value}: no such file; give 'temporary' or a YAML file "
                          "with ca_file, cert and key (the paths of the cluster's TLS "
                          "certificates)")
    try:
        data = yaml.safe_load(path.read_text())
        security = DaskSecurity.model_validate(data)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    except ValidationError as err:
        raise ConfigError(_format_errors(err, str(path))) from None
    return security.resolved(path.resolve().parent)


class Config(_Section):
    chain: Chain
    sensors: Sensors = Sensors()
    features: Features = Features()
    user_feat: UserFeat = UserFeat()
    series: SeriesOptions = SeriesOptions()
    stac: StacOptions = StacOptions()
    sampling: Sampling = Sampling()
    models: Models = Models()
    classification: Classification = Classification()
    dask: DaskOptions = DaskOptions()

    source: Path | None = Field(default=None, exclude=True)
    _import_warnings: list[str] = PrivateAttr(default_factory=list)  # iota2 settings ignored

    @model_validator(mode="after")
    def _fusion_needs_runs(self):
        if self.classification.merge_final_classifications.enable and self.chain.runs < 2:
            raise ValueError("classification.merge_final_classifications fuses the maps of "
                             f"several runs, but chain.runs is {self.chain.runs}: set "
                             "chain.runs >= 2 or disable the fusion")
        return self

    @model_validator(mode="after")
    def _autocontext_inputs(self):
        chain = self.chain
        if not chain.enable_autocontext:
            return self
        if chain.external_samples is not None or self.sampling.sample_augmentation.activate:
            raise ValueError("chain.enable_autocontext needs every learning sample to be a pixel "
                             "of a tile (its superpixel gives its context): turn off "
                             "chain.external_samples and sampling.sample_augmentation")
        halo = 3 * chain.autocontext_superpixel_size
        if self.dask.chunk_size < halo:
            raise ValueError(f"chain.autocontext_superpixel_size "
                             f"{chain.autocontext_superpixel_size} needs dask.chunk_size >= "
                             f"{halo} (3 superpixels of overlap)")
        return self

    def section_hash(self, *names: str) -> str:
        """A stable hash of the named sections (used to decide whether a step must run again)."""
        payload = {name: getattr(self, name).model_dump(mode="json", by_alias=True)
                   for name in names}
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


_PATH_KEYS = ("output_path", "s2_path", "l8_path_old", "user_feat_path", "ground_truth",
              "region_path", "nomenclature_path", "color_table", "s2_s2c_path", "l8_path",
              "s1_path", "series_path", "stac_path")


def _format_errors(err: ValidationError, source: str, hint=None) -> str:
    lines = [f"invalid configuration {source}:"]
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"])
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            known = hint(item["loc"]) if hint else None
            message = (f"unknown key; {known}" if known
                       else "unknown key (check its spelling and section)")
        elif item["type"] == "missing":
            message = "required key is missing"
        elif item["type"] == "value_error":
            message = str(item.get("ctx", {}).get("error", message))
        lines.append(f"  {key}: {message}" if key else f"  {message}")
    return "\n".join(lines)


def parse_config(data: dict, base_dir: Path, source: str = "<dict>", hint=None) -> Config:
    """Validate a config dict; relative paths resolve against `base_dir`. `hint(loc)` may
    name the key a misspelt or foreign one stands for."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid configuration {source}: the top level must be a mapping")
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source, hint)) from None
    for key in _PATH_KEYS:
        value = getattr(config.chain, key)
        if value is not None and not fs.joinable(value):
            setattr(config.chain, key, (base_dir / value).resolve())
    external = config.chain.external_samples
    if external is not None and not fs.joinable(external.path):
        external.path = (base_dir / external.path).resolve()
    if isinstance(config.dask.security, DaskSecurity):
        config.dask.security = config.dask.security.resolved(base_dir)
    return config
