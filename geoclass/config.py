"""The YAML configuration: pydantic models with iota2's vocabulary, loading and path resolution."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from geoclass.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Chain(_Section):
    """iota2's `chain` section: where the inputs are and how runs are drawn."""

    output_path: Path
    list_tile: list[str]
    s2_path: Path | None = None
    l8_path_old: Path | None = None
    user_feat_path: Path | None = None
    ground_truth: Path | None = None
    data_field: str = "code"
    region_path: Path | None = None
    region_field: str = "region"
    nomenclature_path: Path | None = None
    color_table: Path | None = None
    spatial_resolution: float | None = Field(default=None, gt=0)
    ratio: float = Field(default=0.5, gt=0, lt=1)
    runs: int = Field(default=1, ge=1)
    random_seed: int = 0
    split_ground_truth: bool = True
    proj: str | None = None

    @field_validator("list_tile", mode="before")
    @classmethod
    def _split_tiles(cls, value: Any) -> Any:
        # iota2 writes tiles as one space-separated string: 'T31TCJ T31TDJ'.
        if isinstance(value, str):
            return value.split()
        return value


class SensorOptions(_Section):
    """Per-sensor options: the regular date grid of the gap-filled series."""

    temporal_resolution: int | None = Field(default=10, ge=1)
    start_date: dt.date | None = None
    end_date: dt.date | None = None


class Sensors(_Section):
    sentinel_2: SensorOptions = SensorOptions()
    landsat_8_old: SensorOptions = SensorOptions(temporal_resolution=16)


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


class DaskOptions(_Section):
    scheduler: str | None = None
    workers: int | None = Field(default=None, ge=1)
    threads_per_worker: int | None = Field(default=None, ge=1)
    memory_limit: str | None = None
    chunk_size: int = Field(default=1024, ge=16)


class Config(_Section):
    chain: Chain
    sensors: Sensors = Sensors()
    features: Features = Features()
    user_feat: UserFeat = UserFeat()
    dask: DaskOptions = DaskOptions()

    source: Path | None = Field(default=None, exclude=True)

    def section_hash(self, *names: str) -> str:
        """A stable hash of the named sections (used to decide whether a step must run again)."""
        payload = {name: getattr(self, name).model_dump(mode="json") for name in names}
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


_PATH_KEYS = ("output_path", "s2_path", "l8_path_old", "user_feat_path", "ground_truth",
              "region_path", "nomenclature_path", "color_table")


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration {source}:"]
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"])
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and section)"
        elif item["type"] == "missing":
            message = "required key is missing"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def parse_config(data: dict, base_dir: Path, source: str = "<dict>") -> Config:
    """Validate a config dict; relative paths resolve against `base_dir`."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid configuration {source}: the top level must be a mapping")
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None
    for key in _PATH_KEYS:
        value = getattr(config.chain, key)
        if value is not None and not value.is_absolute():
            setattr(config.chain, key, (base_dir / value).resolve())
    return config


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML configuration file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    config = parse_config(data or {}, path.resolve().parent, str(path))
    config.source = path.resolve()
    return config
