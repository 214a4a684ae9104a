"""Errors a user can cause. The CLI prints them on one line and exits non-zero; bugs raise normally."""


class DigitlabError(Exception):
    """Base class: something the user can fix (a path, a file, an option)."""


class DataError(DigitlabError):
    """A dataset cannot be found, read or verified."""


class FormatError(DataError):
    """A file is not a valid IDX/npz file (truncated, corrupt, wrong shape or dtype)."""


class DownloadError(DataError):
    """Every mirror failed, or a download did not verify."""


class ConfigError(DigitlabError):
    """An option or a configuration value is invalid (unknown model, negative epochs...)."""


class RunError(DigitlabError):
    """A run directory is missing, incomplete, or its weights do not match its config."""


class ImageError(DigitlabError):
    """A user's picture cannot be turned into a digit (not an image, blank, too large)."""


class ExportError(DigitlabError):
    """A model cannot be exported, or an exported file cannot be loaded."""
