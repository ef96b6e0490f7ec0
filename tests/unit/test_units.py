"""geoq.units: durations, sizes and rates as people write them."""

from __future__ import annotations

import pytest

from geoq.units import parse_duration, parse_rate, parse_size


@pytest.mark.parametrize("text, seconds", [
    ("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("30d", 2592000.0),
    ("0", 0.0), (0, 0.0), (12, 12.0), (1.5, 1.5), ("2.5", 2.5), ("1.5s", 1.5), (".5s", 0.5),
    (" 10 S ", 10.0), ("5MIN", 300.0), ("2 hours", 7200.0),
])
def test_a_duration_is_a_number_and_a_unit_or_bare_seconds(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["abc", "-5s", -1, "5 parsecs", "", "s", "1.2.3s", True, None, [1], float("inf"), "5s5"])
def test_a_duration_that_is_negative_or_garbage_is_a_value_error(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^expected a duration such as 500ms, 30s, 5m, got "):
        parse_duration(bad)


def test_a_duration_error_shows_the_value_given() -> None:
    with pytest.raises(ValueError) as e:
        parse_duration("abc")
    assert str(e.value) == "expected a duration such as 500ms, 30s, 5m, got 'abc'"


@pytest.mark.parametrize("text, nbytes", [
    ("100b", 100), ("512kb", 512 * 1024), ("1mb", 1024**2), ("2gb", 2 * 1024**3), (4096, 4096),
    ("4096", 4096), ("1MB", 1024**2), (" 1 KiB ", 1024), ("1.5kb", 1536), ("0", 0),
])
def test_a_size_is_bytes_with_binary_units(text: object, nbytes: int) -> None:
    assert parse_size(text) == nbytes


@pytest.mark.parametrize("bad", ["lots", "-1kb", "1.5", 1.5, "1 parsec", True, ""])
def test_a_size_that_is_negative_fractional_bytes_or_garbage_is_a_value_error(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^expected a size such as 512kb, 1mb, 2gb, got "):
        parse_size(bad)


@pytest.mark.parametrize("text, per_second", [
    ("100/s", 100.0), ("10/m", 10 / 60), ("5/h", 5 / 3600), ("3/10s", 0.3), (" 60 / MIN ", 1.0), ("7", 7.0), (2, 2.0),
])
def test_a_rate_is_a_count_per_unit_of_time(text: object, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("bad", ["fast", "10/", "/s", "10/parsec", "-1/s", "10/0s", "10s/s", True])
def test_a_rate_that_is_garbage_is_a_value_error(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^expected a rate such as 100/s, 10/m, 5/h, got "):
        parse_rate(bad)
