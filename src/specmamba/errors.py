"""User-facing errors.

Every error that a user can cause (bad data, bad arguments, a checkpoint of the wrong kind) is a
:class:`SpecMambaError`. Its message is one paragraph that names the file or argument at fault and
what would be valid. The command line prints that paragraph and exits with status 2 instead of a
traceback; Python callers catch it like any other exception.
"""

from __future__ import annotations


class SpecMambaError(Exception):
    """Base class of every error caused by the user's input, not by a bug."""


class DataError(SpecMambaError, ValueError):
    """A dataset folder, image or mask that cannot be used as it is."""


class ConfigError(SpecMambaError, ValueError):
    """An argument, option or config value outside what is valid."""


class CheckpointError(SpecMambaError, ValueError):
    """A checkpoint that is missing, corrupt, or of another architecture or channel count."""


class OutputError(SpecMambaError, OSError):
    """An output folder or file that cannot be written: read-only, full, or a file in the way."""


class InputSizeError(SpecMambaError, ValueError):
    """An input whose spatial size the model cannot take."""


class BackendUnavailableError(SpecMambaError, RuntimeError):
    """An optional backend (numba, triton, mamba-ssm, CUDA) that cannot run here."""


class TrainingDivergedError(SpecMambaError, FloatingPointError):
    """The training loss became NaN or infinite (usually a learning rate too high for the model)."""


class NotMeasurableError(SpecMambaError, ValueError):
    """A feature map too small for a Fourier measure (the audit reports such a stage as not measurable)."""
