"""One exception tree. Every error a user can see says what to do; each carries an exit code."""

from __future__ import annotations


class EdgeOcrError(Exception):
    """Base of every error edge-ocr raises on purpose."""

    exit_code = 1


class ConfigError(EdgeOcrError):
    """The configuration file or a command-line option is invalid."""

    exit_code = 2


class ModelError(EdgeOcrError):
    """A model artifact is missing, corrupt or fails its check."""

    exit_code = 3


class ModelNotFoundError(ModelError):
    """No built model matches the request. Run `edge-ocr models build`."""


class HashMismatchError(ModelError):
    """A downloaded or built file does not have its pinned sha256."""


class EngineUnavailableError(EdgeOcrError):
    """An inference engine cannot be imported or started on this machine."""

    exit_code = 4


class InputError(EdgeOcrError):
    """An input file cannot be read as an image (missing, empty, corrupt, wrong type or too large)."""

    exit_code = 5


class StoreError(EdgeOcrError):
    """The results database cannot be opened or written."""

    exit_code = 6


class StoreInUseError(StoreError):
    """Another agent already runs on this database or data folder (one agent per store)."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer edge-ocr; upgrade edge-ocr to open it."""


class SyncError(EdgeOcrError):
    """The sync endpoint refused or could not be reached."""

    exit_code = 7
