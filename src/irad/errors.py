"""Exceptions that name the problem and, where there is one, the fix.

Every error a user can trigger with bad input derives from :class:`IradError`, so callers can
catch the library's own complaints without swallowing bugs.
"""

from __future__ import annotations


class IradError(Exception):
    """Base class of every error irad raises on purpose."""


class InputError(IradError, ValueError):
    """A tensor or argument has the wrong shape, dtype, range or value."""


class ConfigError(IradError, ValueError):
    """An unknown name or an invalid setting in a configuration."""


class SettingError(InputError, ConfigError):
    """A setting (an argument, a command-line option, a config field or a name) has a bad value.

    Both an :class:`InputError` and a :class:`ConfigError`: callers catching either see it.
    """


class DataError(IradError, OSError):
    """A data set is missing, corrupt, or failed its checksum."""


class CheckpointError(IradError, OSError):
    """A checkpoint is missing, corrupt, or does not fit the model it is loaded into."""


class MissingWeights(CheckpointError):
    """A learned defense has no trained weights yet (none bundled, none passed); the message
    names the command that trains them."""
