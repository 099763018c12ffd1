"""Reading a configuration file: YAML, or an iota2 configuration file as it is (`.cfg` syntax,
told apart by its content, converted by io.iota2)."""

from __future__ import annotations

from pathlib import Path

import yaml

from geoclass.config import Config, parse_config
from geoclass.errors import ConfigError
from geoclass.io.iota2.convert import load_iota2
from geoclass.io.iota2.keys import hint_for
from geoclass.io.iota2.parser import looks_like_iota2


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML configuration file, or an iota2 one; unknown keys that are
    iota2 names say which geoclass key replaces them."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        if looks_like_iota2(text):
            return load_iota2(path, text)
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    config = parse_config(data or {}, path.resolve().parent, str(path), hint=hint_for)
    config.source = path.resolve()
    return config
