"""The pipeline's small exception tree.

Every error a user can cause (bad input, bad arguments, a machine that cannot
record) is a PipelineError whose message is one line naming the file, the
offset or line, what was found and what was expected.  The CLI prints it and
exits 1 (2 for UsageError) without a traceback.
"""


class PipelineError(Exception):
    """Base of all errors the CLI reports as one line."""

    exit_code = 1


class UsageError(PipelineError):
    """Bad command-line arguments or option values."""

    exit_code = 2


class TraceFormatError(PipelineError):
    """A capture that cannot be decoded: truncated, corrupt, unknown or unsupported."""


class SchemaError(PipelineError):
    """A table whose columns do not match its artifact's schema."""


class RecordError(PipelineError):
    """`ptreplay record` cannot run on this machine or for this target."""


class OutputExistsError(PipelineError):
    """An output is already there and --force was not given."""


class LimitError(PipelineError):
    """An input whose replay would need more memory than the limit allows (checked before allocating)."""
