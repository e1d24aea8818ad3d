"""basnet-cli: BASNet salient-object masks from the command line."""

import os as _os

__version__ = "0.1.0"

# ONNX Runtime 1.32+ on Linux starts usage telemetry when imported (and leaves a session file
# in $TMPDIR); a command-line tool should not phone home unasked. A user's own setting wins.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
