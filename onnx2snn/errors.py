"""One exception type for problems with the user's input (files, graphs, options).

The CLI turns it into a one-line message and a non-zero exit code; anything else is a bug and keeps
its traceback.
"""


class Onnx2SnnError(Exception):
    """A problem with the user's input: the message names the cause in one line."""

    exit_code = 1


class VerificationError(Onnx2SnnError):
    """The edited graph does not reproduce the original's activations up to the known scales."""

    exit_code = 3
