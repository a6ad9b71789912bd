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



def first_line(e: BaseException) -> str:
    """The first line of an exception's message (library errors can run to pages), or its type."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
