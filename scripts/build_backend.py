"""Build backend: setuptools, refusing a non-editable install with one clear line.

srlab runs from its repository (`python -m src.train`, configs in `conf/`); a wheel would ship
neither `conf/` nor a sensible top-level package name, so only `pip install -e .` is supported.
"""

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (every hook setuptools provides, unchanged)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):  # noqa: ANN001, ANN201
    raise SystemExit(
        "srlab runs from its repository and reads its configs from conf/: install it editable, "
        "`pip install -e .` (or `make install`), not `pip install .`"
    )


build_editable = _setuptools.build_editable
