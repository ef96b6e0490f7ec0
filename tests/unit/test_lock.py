"""The suite runs against requirements/test.lock, exactly: a fresh clone tests what was tested here."""

from __future__ import annotations

import configparser
import re
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "test.lock"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, tuple[str, str]]:
    """name -> (version, marker text) of each line of the lock."""
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            spec, _, marker = line.partition(";")
            name, _, version = spec.strip().partition("==")
            pins[_canonical(name)] = (version, marker.strip())
    return pins


def _declared() -> list[Requirement]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options"]["install_requires"] + cfg["options.extras_require"]["test"]
    return [Requirement(line) for line in lines.splitlines() if line.strip()]


def test_every_pin_of_the_lock_is_installed_at_exactly_that_version():
    wrong = {}
    for name, (version, marker) in _pins().items():
        if marker and not Marker(marker).evaluate():
            continue
        installed = metadata.version(name)
        if installed != version:
            wrong[name] = (version, installed)
    assert wrong == {}


def test_the_lock_pins_every_declared_dependency_within_its_range():
    pins = _pins()
    outside = [str(req) for req in _declared()
               if _canonical(req.name) not in pins or pins[_canonical(req.name)][0] not in req.specifier]
    assert outside == []
