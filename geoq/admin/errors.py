"""The CLI's own outcomes that are not geoq errors elsewhere: each carries its exit status.

    GeoqError
    └── CommandError           a command could not do what was asked (exit_code)
        ├── UsageError         bad arguments or input files (exit 2)
        └── NotFound           what was asked for does not exist (exit 1)
"""

from __future__ import annotations

from geoq.errors import GeoqError
from geoq.exits import EXIT_NOT_FOUND, EXIT_USAGE


class CommandError(GeoqError):
    exit_code = EXIT_NOT_FOUND


class UsageError(CommandError):
    exit_code = EXIT_USAGE


class NotFound(CommandError):
    exit_code = EXIT_NOT_FOUND
