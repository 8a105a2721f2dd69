"""Column values from their binlog storage formats (shared by row images and binary JSON).

Formats from MySQL's my_time.cc / decimal.cc: packed DECIMAL, DATE, DATETIME2, TIMESTAMP2 and
TIME2 with 0-6 fractional digits, and the pre-5.6 DATETIME/TIMESTAMP/TIME forms.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Context, Decimal
from typing import NoReturn

from liberate.errors import RecordError

_UTC = dt.UTC
#: TIMESTAMP values count seconds from here
EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)
_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
#: bytes of the fractional part of a temporal value, by fractional digits
FRACTION_BYTES = (0, 1, 1, 2, 2, 3, 3)


def decimal_size(precision: int, scale: int) -> int:
    """Bytes of a packed DECIMAL(precision, scale) (MySQL decimal_bin_size)."""
    integral = precision - scale
    return (
        integral // 9 * 4 + _DIG2BYTES[integral % 9] + scale // 9 * 4 + _DIG2BYTES[scale % 9]
    )


def decimal_groups(precision: int, scale: int) -> tuple[tuple[int, int, int], ...]:
    """How a packed DECIMAL splits into base-10**9 groups, most significant first.

    Each group is ``(shift, mask, digits)``: its value is ``n >> shift & mask`` of the packed
    integer ``n`` (after the sign is taken out), worth ``digits`` decimal digits.
    """
    integral = precision - scale
    sizes: list[tuple[int, int]] = []  # (bytes, digits)
    if integral % 9:
        sizes.append((_DIG2BYTES[integral % 9], integral % 9))
    sizes += [(4, 9)] * (integral // 9) + [(4, 9)] * (scale // 9)
    if scale % 9:
        sizes.append((_DIG2BYTES[scale % 9], scale % 9))
    groups = []
    remaining = sum(size for size, _ in sizes) * 8
    for size, digits in sizes:
        remaining -= size * 8
        groups.append((remaining, (1 << size * 8) - 1, digits))
    return tuple(groups)


#: a context that never rounds a DECIMAL (65 digits at most)
DECIMAL_CONTEXT = Context(prec=65, Emin=-999, Emax=999)


def decimal_reader(precision: int, scale: int) -> Callable[[bytes], Decimal]:
    """A reader of packed DECIMAL(precision, scale) (MySQL decimal2bin): groups of 9 digits in
    4 big-endian bytes, partial groups in fewer; the sign in the flipped top bit, negatives
    with every bit inverted."""
    size = decimal_size(precision, scale)
    top = 1 << (size * 8 - 1)
    invert = ((1 << size * 8) - 1) ^ top
    # (shift, mask, 10 ** digits) of each group, most significant first
    groups = tuple((shift, mask, 10**digits)
                   for shift, mask, digits in decimal_groups(precision, scale))
    exponent = -scale

    def read(raw: bytes) -> Decimal:
        n = int.from_bytes(raw, "big")
        negative = not n & top
        n ^= invert if negative else top
        value = 0
        for shift, mask, weight in groups:
            value = value * weight + (n >> shift & mask)
        return Decimal(-value if negative else value).scaleb(exponent, DECIMAL_CONTEXT)

    return read


def fraction(raw: bytes, offset: int, fsp: int) -> int:
    """Microseconds of a temporal value's fractional part (1, 2 or 3 big-endian bytes)."""
    if fsp == 0:
        return 0
    if fsp <= 2:
        return raw[offset] * 10000
    if fsp <= 4:
        return (raw[offset] << 8 | raw[offset + 1]) * 100
    return raw[offset] << 16 | raw[offset + 1] << 8 | raw[offset + 2]


def datetime_reader(fsp: int) -> Callable[[bytes], dt.datetime]:
    """A reader of DATETIME2: 40 bits ``sign, year*13+month, day, hour, minute, second``."""

    def read(raw: bytes) -> dt.datetime:
        packed = int.from_bytes(raw[:5], "big") - 0x8000000000
        ymd = packed >> 17
        ym = ymd >> 5
        hms = packed & 0x1FFFF
        try:
            return dt.datetime(
                ym // 13, ym % 13, ymd & 31, hms >> 12, hms >> 6 & 63, hms & 63,
                fraction(raw, 5, fsp),
            )
        except ValueError:
            raise zero_date(f"{ym // 13:04d}-{ym % 13:02d}-{ymd & 31:02d}") from None

    return read


def date(value: int) -> dt.date:
    try:
        return dt.date(value >> 9, value >> 5 & 15, value & 31)
    except ValueError:
        raise zero_date(f"{value >> 9:04d}-{value >> 5 & 15:02d}-{value & 31:02d}") from None


def timestamp_seconds(seconds: int, micros: int) -> dt.datetime:
    if seconds == 0 and micros == 0:
        zero_timestamp()
    return EPOCH + dt.timedelta(0, seconds, micros)


def zero_timestamp() -> NoReturn:
    """Refuse the zero TIMESTAMP (0 seconds since the epoch, no fraction)."""
    raise zero_date("0000-00-00 00:00:00")


def time2(data: bytes, pos: int, fsp: int) -> int:
    """A TIME2 value as signed microseconds (the type contract's MySQL TIME: a duration)."""
    # my_time_packed_from_binary: a 24-bit integer part and a fraction, offset-encoded.
    intpart = int.from_bytes(data[pos : pos + 3], "big") - 0x800000
    if fsp == 0:
        packed = intpart << 24
    elif fsp <= 2:
        frac = data[pos + 3]
        if intpart < 0 and frac:
            intpart += 1
            frac -= 0x100
        packed = (intpart << 24) + frac * 10000
    elif fsp <= 4:
        frac = data[pos + 3] << 8 | data[pos + 4]
        if intpart < 0 and frac:
            intpart += 1
            frac -= 0x10000
        packed = (intpart << 24) + frac * 100
    else:
        packed = int.from_bytes(data[pos : pos + 6], "big") - 0x800000000000
    negative = packed < 0
    if negative:
        packed = -packed
    hms = packed >> 24
    hour, minute, second = hms >> 12 & 0x3FF, hms >> 6 & 63, hms & 63
    return _duration(negative, hour, minute, second, packed & 0xFFFFFF)


def time_old(value: int) -> int:
    """A pre-5.6 TIME value (``±HHHMMSS`` as an integer) as signed microseconds."""
    negative = bool(value & 0x800000)
    if negative:
        value = 0x1000000 - value
    return _duration(negative, value // 10000, value // 100 % 100, value % 100, 0)


def _duration(negative: bool, hour: int, minute: int, second: int, micros: int) -> int:
    total = ((hour * 60 + minute) * 60 + second) * 1_000_000 + micros
    return -total if negative else total


def datetime_old(value: int) -> dt.datetime:
    day_part, time_part = divmod(value, 1_000_000)
    year, rest = divmod(day_part, 10_000)
    month, day = divmod(rest, 100)
    hour, rest = divmod(time_part, 10_000)
    minute, second = divmod(rest, 100)
    try:
        return dt.datetime(year, month, day, hour, minute, second)
    except ValueError:
        raise zero_date(f"{year:04d}-{month:02d}-{day:02d}") from None


def zero_date(text: str) -> RecordError:
    return RecordError(
        f"date {text} is not a real date (a MySQL zero date)",
        hint="replace zero dates with NULL, or set sql_mode to reject them",
    )


def set_text(bits: int, values: tuple[str, ...]) -> str:
    return ",".join(value for index, value in enumerate(values) if bits >> index & 1)
