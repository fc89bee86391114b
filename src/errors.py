"""Errors a user can fix: entry points print them as one line and exit with status 2."""

import sys


class SrlabError(Exception):
    """Base class: the message names the file or option and what is wrong with it."""


class ConfigError(SrlabError):
    """An option holds a value the run cannot use."""


class DataError(SrlabError):
    """A data folder or file cannot be used."""


class OutputError(SrlabError):
    """A folder or file that a run writes cannot be written."""


def user_error(exc: BaseException) -> BaseException | None:
    """The user-fixable error behind ``exc`` (Hydra wraps errors raised while instantiating), if any."""
    # Lightning's own config errors count too; where Lightning was never imported, none was raised.
    lightning_errors = sys.modules.get("lightning.fabric.utilities.exceptions")
    kinds = (SrlabError, lightning_errors.MisconfigurationException) if lightning_errors else (SrlabError,)
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kinds):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
