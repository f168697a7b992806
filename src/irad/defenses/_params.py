"""Moved to :mod:`irad.checks`; this alias goes once every caller imports from there."""

from irad.checks import check_choice as as_choice

__all__ = ["as_choice"]
