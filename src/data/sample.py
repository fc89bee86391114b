"""The embedded sample: real photos that ship inside installed packages (no download needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from src.errors import DataError

# name -> (package, path inside it). Lossless PNGs are used for val/test in conf/data/sample.yaml.
SAMPLE_PHOTOS = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "motorcycle_left": ("skimage", "data/motorcycle_left.png"),
    "motorcycle_right": ("skimage", "data/motorcycle_right.png"),
    "ihc": ("skimage", "data/ihc.png"),
    "hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}


def sample_path(name: str) -> Path:
    if name not in SAMPLE_PHOTOS:
        raise DataError(f"sample photo {name!r} unknown; choose from {', '.join(SAMPLE_PHOTOS)}")
    package, rel = SAMPLE_PHOTOS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise DataError(f"sample photo {name!r} ships with the '{package}' package, which is not installed")
    path = Path(spec.origin).parent / rel
    if not path.is_file():
        raise DataError(f"sample photo {name!r}: {path} is missing from the installed '{package}' package")
    return path


def sample_splits(train: list[str], val: list[str], test: list[str]) -> dict[str, list[Path]]:
    """The sample photos of each split, by name (the split itself lives in the config)."""
    return {split: [sample_path(n) for n in names] for split, names in (("train", train), ("val", val), ("test", test))}
