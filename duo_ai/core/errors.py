"""User-facing errors.

Anything the user can fix (a bad config, an unknown game, a missing checkpoint) raises a
`DuoAIError`; the CLI prints its message on one line and exits non-zero without a traceback.
Everything else is a bug and keeps its traceback.
"""


class DuoAIError(Exception):
    """A problem the user can fix; the message says what is wrong and how to fix it."""


class ConfigError(DuoAIError):
    """Bad YAML, an unknown key, or a value of the wrong type."""


class CheckpointError(DuoAIError):
    """A checkpoint that is missing, corrupt, or belongs to another model."""


class EnvError(DuoAIError):
    """An environment that cannot be built as configured (unknown game, bad split...)."""


class DistributedError(DuoAIError):
    """Data-parallel processes that cannot work together: no rendezvous, a rank that died or hung.

    Not the user's input at fault as such, so the CLI exits with code 1 (still one line, no traceback).
    """

    exit_code = 1


class OutputError(DuoAIError):
    """A file that could not be written after the work was done (a full disk, a read-only file system)."""


class TrainingDiverged(DuoAIError):
    """Training whose weights became NaN or infinite; the run keeps its last finite checkpoint."""
