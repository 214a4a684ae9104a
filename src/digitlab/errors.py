"""Errors a user can cause. The CLI prints them on one line and exits non-zero; bugs raise normally.

Each class knows how it is answered: ``http_status`` over HTTP and ``exit_code`` on the command
line, so the server and the CLI map errors by type, never by searching the message.
"""


class DigitlabError(Exception):
    """Base class: something the user can fix (a path, a file, an option)."""

    http_status: int = 400
    exit_code: int = 1


class DataError(DigitlabError):
    """A dataset cannot be found, read or verified."""


class FormatError(DataError):
    """A file is not a valid IDX/npz file (truncated, corrupt, wrong shape or dtype)."""


class DownloadError(DataError):
    """Every mirror failed, or a download did not verify."""


class ConfigError(DigitlabError):
    """An option or a configuration value is invalid (unknown model, negative epochs...)."""

    http_status = 422


class RunError(DigitlabError):
    """A run directory is missing, incomplete, or its weights do not match its config."""


class ImageError(DigitlabError):
    """A user's picture cannot be turned into a digit (blank, unusable); 422 over HTTP."""

    http_status = 422


class NotAnImageError(ImageError):
    """The bytes are not a picture any decoder can read (or a decoder refused them); 415 over HTTP."""

    http_status = 415


class ImageTooLargeError(ImageError):
    """The picture is too large to decode (pixel count, decompression bomb); 413 over HTTP."""

    http_status = 413


class OutputError(DigitlabError):
    """A file or folder cannot be written: read-only, full disk, a file where a folder should be."""


class ExportError(DigitlabError):
    """A model cannot be exported, or an exported file cannot be loaded."""


class Interrupted(DigitlabError):
    """Stopped by Ctrl-C (after the last completed checkpoint); the CLI exits with 130, as shells expect."""

    exit_code = 130
