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


def require_file(path: str, what: str) -> None:
    """Raise the one-line error for an input file that is not there (``what``: "model file", …)."""
    import os
    if not os.path.isfile(path):
        raise Onnx2SnnError(f"{what} {path!r} does not exist")
