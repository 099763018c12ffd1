"""`geoclass demo`: a generated scene and the whole chain on it, with the features users look
for switched on (2 runs, probability maps, boundary fusion, fusion of runs, uncertainty
maps, Bayesian smoothing)."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from geoclass.testing.synth import synth

log = logging.getLogger(__name__)

DEMO_SETTINGS = {
    "chain": {"runs": 2},
    "classification": {
        "enable_probability_map": True,
        "boundary_fusion": {"enable": True, "interior_buffer_size": 100,
                            "exterior_buffer_size": 100},
        "merge_final_classifications": {"enable": True, "method": "majorityvoting"},
        "uncertainty": ["entropy", "margin"],
        "smoothing": {"method": "bayes"},
    },
}


def demo_config(out: Path, size: int = 256, seed: int = 0) -> Path:
    """Generate the demo scene in `out` (kept if already there) and its config."""
    config_path = out / "config.yaml"
    if not config_path.exists():
        log.info("generating a 2-tile scene of %d x %d px in %s", size, size, out)
        synth(out, tiles=2, size=size, dates=12, classes=8, regions=2, seed=seed)
        data = yaml.safe_load(config_path.read_text())
        for section, values in DEMO_SETTINGS.items():
            data.setdefault(section, {}).update(values)
        config_path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return config_path
