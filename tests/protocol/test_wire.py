# wire.py: fixed-width ints, length-encoded ints at every width boundary, the
# NULL marker and the invalid 0xFF prefix, lenenc and NUL-terminated strings;
# every read on short data raises RemoteProtocolError (never IndexError, never
# a loop); the writers round-trip through Reader (hypothesis).
from __future__ import annotations

import struct

import pytest
from hypothesis import given, strategies as st

from mysqlpool_proxy.errors import ProtocolError, RemoteProtocolError
from mysqlpool_proxy.protocol.wire import (
    NULL_LENGTH,
    Reader,
    int1,
    int2,
    int3,
    int4,
    int8,
    lenenc_bytes,
    lenenc_int,
)

# -- fixed-width integers ------------------------------------------------------


def test_fixed_ints_are_little_endian():
    r = Reader(b"\x01" + b"\x02\x01" + b"\x03\x02\x01" + b"\x04\x03\x02\x01" + b"\x08\x07\x06\x05\x04\x03\x02\x01")
    assert r.int1() == 0x01
    assert r.int2() == 0x0102
    assert r.int3() == 0x010203
    assert r.int4() == 0x01020304
    assert r.int8() == 0x0102030405060708
    assert r.at_end() and r.remaining == 0


def test_fixed_ints_maximum_values():
    r = Reader(b"\xff" * (1 + 2 + 3 + 4 + 8))
    assert (r.int1(), r.int2(), r.int3(), r.int4(), r.int8()) == (0xFF, 0xFFFF, 0xFFFFFF, 0xFFFFFFFF, 2**64 - 1)


def test_fixed_int_writers():
    assert int1(0xAB) == b"\xab"
    assert int2(0x0102) == b"\x02\x01"
    assert int3(0x010203) == b"\x03\x02\x01"
    assert int4(0x01020304) == b"\x04\x03\x02\x01"
    assert int8(0x0102030405060708) == b"\x08\x07\x06\x05\x04\x03\x02\x01"
    assert int3(0xFFFFFF) == b"\xff\xff\xff"
    assert int8(2**64 - 1) == b"\xff" * 8


def test_reader_respects_pos_and_end():
    r = Reader(b"xx\x05\x06yy", pos=2, end=4)
    assert r.remaining == 2
    assert r.int1() == 5 and r.int1() == 6
    with pytest.raises(RemoteProtocolError):
        r.int1()  # bytes past `end` are not ours


def test_reader_over_memoryview_and_bytearray():
    for buf in (bytearray(b"\x03abc\0tail"), memoryview(b"\x03abc\0tail")):
        r = Reader(buf)
        assert r.lenenc_bytes() == b"abc"
        assert r.nul_bytes() == b""
        assert r.rest() == b"tail"
        assert isinstance(Reader(buf).fixed(2), bytes)


# -- length-encoded integers ---------------------------------------------------

# (value, encoding) at every width boundary of Protocol::LengthEncodedInteger.
LENENC_BOUNDARIES = [
    (0, b"\x00"),
    (250, b"\xfa"),
    (251, b"\xfc\xfb\x00"),
    (2**16 - 1, b"\xfc\xff\xff"),
    (2**16, b"\xfd\x00\x00\x01"),
    (2**24 - 1, b"\xfd\xff\xff\xff"),
    (2**24, b"\xfe\x00\x00\x00\x01\x00\x00\x00\x00"),
    (2**64 - 1, b"\xfe" + b"\xff" * 8),
]


@pytest.mark.parametrize("value,encoded", LENENC_BOUNDARIES)
def test_lenenc_int_boundaries(value, encoded):
    assert lenenc_int(value) == encoded
    r = Reader(encoded + b"!")
    assert r.lenenc_int() == value
    assert r.rest() == b"!"


def test_lenenc_int_null_marker():
    r = Reader(b"\xfb\x01")
    assert r.lenenc_int() is NULL_LENGTH is None
    assert r.int1() == 1  # the marker is one byte


def test_lenenc_int_0xff_is_invalid():
    with pytest.raises(RemoteProtocolError):
        Reader(b"\xff\x00\x00\x00\x00\x00\x00\x00\x00").lenenc_int()


def test_lenenc_int_negative_refused():
    with pytest.raises(ValueError):
        lenenc_int(-1)


def test_lenenc_bytes_null_is_an_error():
    with pytest.raises(RemoteProtocolError):
        Reader(b"\xfb").lenenc_bytes()


@pytest.mark.parametrize("n", [0, 1, 250, 251, 2**16 - 1, 2**16])
def test_lenenc_bytes_round_trip_at_boundaries(n):
    s = bytes(i & 0xFF for i in range(n))
    enc = lenenc_bytes(s)
    assert enc == lenenc_int(n) + s
    r = Reader(enc)
    assert r.lenenc_bytes() == s
    assert r.at_end()


# -- NUL-terminated strings ----------------------------------------------------


def test_nul_bytes():
    r = Reader(b"root\0\0x")
    assert r.nul_bytes() == b"root"
    assert r.nul_bytes() == b""
    assert r.rest() == b"x"


def test_nul_bytes_stops_at_end_bound():
    # A NUL past `end` is not ours: the string is unterminated.
    with pytest.raises(RemoteProtocolError):
        Reader(b"abc\0", end=3).nul_bytes()


# -- short data ----------------------------------------------------------------

READS = {
    "int1": lambda r: r.int1(),
    "int2": lambda r: r.int2(),
    "int3": lambda r: r.int3(),
    "int4": lambda r: r.int4(),
    "int8": lambda r: r.int8(),
    "lenenc_int": lambda r: r.lenenc_int(),
    "lenenc_bytes": lambda r: r.lenenc_bytes(),
    "fixed5": lambda r: r.fixed(5),
    "nul_bytes": lambda r: r.nul_bytes(),
}

SHORT_INPUTS = {
    "int1": [b""],
    "int2": [b"", b"\x01"],
    "int3": [b"", b"\x01\x02"],
    "int4": [b"", b"\x01\x02\x03"],
    "int8": [b"", b"\x01" * 7],
    # a prefix announcing more bytes than there are
    "lenenc_int": [b"", b"\xfc", b"\xfc\x01", b"\xfd\x01\x02", b"\xfe" + b"\x01" * 7],
    "lenenc_bytes": [b"", b"\x05abcd", b"\xfc\x00\x01" + b"a" * 255, b"\xfe" + b"\xff" * 8 + b"abc"],
    "fixed5": [b"", b"abcd"],
    "nul_bytes": [b"", b"no terminator", b"\x01\x02\x03"],
}


@pytest.mark.parametrize("name,data", [(n, d) for n, ds in SHORT_INPUTS.items() for d in ds])
def test_short_data_raises_remote_protocol_error(name, data):
    r = Reader(data)
    with pytest.raises(RemoteProtocolError):
        READS[name](r)


def test_fixed_negative_length_refused():
    with pytest.raises(RemoteProtocolError):
        Reader(b"abc").fixed(-1)


@given(st.binary(max_size=64), st.lists(st.sampled_from(sorted(READS)), min_size=1, max_size=40))
def test_any_read_sequence_ends_in_value_or_protocol_error(data, ops):
    """On arbitrary bytes every read returns or raises ProtocolError; the cursor only moves forward, within bounds."""
    r = Reader(data)
    for op in ops:
        before = r.pos
        try:
            READS[op](r)
        except ProtocolError:
            return
        assert before <= r.pos <= len(data)
    assert r.remaining == len(data) - r.pos


# -- writers round-trip --------------------------------------------------------


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_lenenc_int_round_trip(n):
    enc = lenenc_int(n)
    assert len(enc) == (1 if n < 251 else 3 if n < 2**16 else 4 if n < 2**24 else 9)
    r = Reader(enc)
    assert r.lenenc_int() == n
    assert r.at_end()


@given(st.lists(st.binary(max_size=300), max_size=10))
def test_lenenc_bytes_sequence_round_trip(items):
    data = b"".join(lenenc_bytes(b) for b in items)
    r = Reader(data)
    assert [r.lenenc_bytes() for _ in items] == items
    assert r.at_end()


@given(st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFF), st.integers(0, 2**32 - 1),
       st.integers(0, 2**64 - 1))
def test_fixed_int_round_trip(a, b, c, d, e):
    r = Reader(int1(a) + int2(b) + int3(c) + int4(d) + int8(e))
    assert (r.int1(), r.int2(), r.int3(), r.int4(), r.int8()) == (a, b, c, d, e)
    assert struct.unpack("<I", int4(d))[0] == d


@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\0" not in b), max_size=8))
def test_nul_bytes_round_trip(items):
    r = Reader(b"".join(i + b"\0" for i in items))
    assert [r.nul_bytes() for _ in items] == items
    assert r.at_end()
