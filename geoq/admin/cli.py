"""`geoq -c CONFIG <command>`."""

from __future__ import annotations

import sys
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    print("geoq: the admin commands are not built yet; see README", file=sys.stderr)
    return 2
