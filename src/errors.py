"""Errors a user can fix: entry points print them as one line and exit with status 2."""


class SrlabError(Exception):
    """Base class: the message names the file or option and what is wrong with it."""


class ConfigError(SrlabError):
    """An option holds a value the run cannot use."""


class DataError(SrlabError):
    """A data folder or file cannot be used."""
