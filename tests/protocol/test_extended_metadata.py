# MariaDB's extended metadata in column definitions (protocol/rows.py, and the ResponseTracker that
# relays them): answers MariaDB 10.11 sent to a connection with MARIADB_CLIENT_EXTENDED_METADATA and
# to one without, for the same statements (a JSON and a UUID column; the proxy's own read-back of a
# user variable). The tracker relays both kinds whole, byte by byte and in random chunks, untouched;
# the proxy's parser reads the block where it is; a definition without it is what the server sends
# a connection that did not ask.
from __future__ import annotations

import pytest

from mysqlpool_proxy.errors import RemoteProtocolError
from mysqlpool_proxy.protocol.framing import encode_packet
from mysqlpool_proxy.protocol.response import Expect, Phase
from mysqlpool_proxy.protocol.rows import Column, extended_metadata, parse_text_result, without_extended_metadata

from .helpers import Relaying, feed_whole_and_bytewise


def _packets(*hexes: str) -> list[bytes]:
    return [bytes.fromhex(h) for h in hexes]


# SELECT id, doc, u FROM j (id INT PRIMARY KEY, doc JSON, u UUID), one row.
TABLE_PLAIN = _packets(
    "03",
    "036465660164016a016a0269640269640c3f000b000000030350000000",
    "036465660164016a016a03646f6303646f630c2d00fffffffffc9000000000",
    "036465660164016a016a017501750c2d0090000000fea000000000",
    "fe00002200",
    "0131087b2261223a20317d2436636364373830632d626162612d313032362d393536342d356238633635363032346462",
    "fe00002200",
)
TABLE_EXTENDED = _packets(
    "03",
    "036465660164016a016a026964026964000c3f000b000000030350000000",
    "036465660164016a016a03646f6303646f630601046a736f6e0c2d00fffffffffc9000000000",
    "036465660164016a016a01750175060004757569640c2d0090000000fea000000000",
    "fe00002200",
    "0131087b2261223a20317d2436636364373830632d626162612d313032362d393536342d356238633635363032346462",
    "fe00002200",
)
# The proxy's read-back of @v after SET @v = 'abc' (client/followups.py, core/capture.py).
READ_BACK_PLAIN = _packets(
    "05",
    "03646566000000104c4153545f494e534552545f49442829000c3f001500000008a100000000",
    "036465660000000440607660000c2d00fcffff03fb0000270000",
    "0364656600000009484558284060766029000c2d00e0ffff1ffb0000000000",
    "036465660000000d43484152534554284060766029000c2d0000010000fd0000270000",
    "036465660000000f434f4c4c4154494f4e284060766029000c2d0000010000fd0000270000",
    "fe00000200",
    "0130036162630636313632363307757466386d623412757466386d62345f67656e6572616c5f6369",
    "fe00000200",
)
READ_BACK_EXTENDED = _packets(
    "05",
    "03646566000000104c4153545f494e534552545f4944282900000c3f001500000008a100000000",
    "03646566000000044060766000000c2d00fcffff03fb0000270000",
    "036465660000000948455828406076602900000c2d00e0ffff1ffb0000000000",
    "036465660000000d4348415253455428406076602900000c2d0000010000fd0000270000",
    "036465660000000f434f4c4c4154494f4e28406076602900000c2d0000010000fd0000270000",
    "fe00000200",
    "0130036162630636313632363307757466386d623412757466386d62345f67656e6572616c5f6369",
    "fe00000200",
)


def framed(packets: list[bytes]) -> bytes:
    return b"".join(encode_packet(p, i + 1) for i, p in enumerate(packets))


def test_the_block_is_the_servers_type_name_and_format():
    assert [extended_metadata(d) for d in TABLE_EXTENDED[1:4]] == [{}, {1: b"json"}, {0: b"uuid"}]


@pytest.mark.parametrize("extended, plain", [(TABLE_EXTENDED, TABLE_PLAIN), (READ_BACK_EXTENDED, READ_BACK_PLAIN)])
def test_a_definition_without_the_block_is_what_a_connection_without_it_gets(extended, plain):
    count = plain[0][0]
    assert [without_extended_metadata(d) for d in extended[1:1 + count]] == plain[1:1 + count]


@pytest.mark.parametrize("packets, flag", [(READ_BACK_EXTENDED, True), (READ_BACK_PLAIN, False)])
def test_the_proxys_read_back_parses_as_the_server_sent_it(packets, flag):
    columns, rows = parse_text_result(framed(packets), extended_metadata=flag)
    assert [c.name for c in columns] == [b"LAST_INSERT_ID()", b"@`v`", b"HEX(@`v`)", b"CHARSET(@`v`)",
                                         b"COLLATION(@`v`)"]
    assert columns[1] == Column(b"@`v`", 0xFB, 45)  # a string in utf8mb4: what the read-back replays it as
    assert rows == [[b"0", b"abc", b"616263", b"utf8mb4", b"utf8mb4_general_ci"]]


def test_read_without_the_flag_the_block_misleads():
    """Why the flag matters: read as a plain definition, the block's length is taken for the fixed
    fields' and the character set and type come out wrong."""
    columns, _ = parse_text_result(framed(READ_BACK_EXTENDED), extended_metadata=False)
    assert columns[1] != Column(b"@`v`", 0xFB, 45)


def test_a_block_that_overruns_its_definition_is_malformed():
    names = TABLE_EXTENDED[2][:18]  # catalog to org_name
    with pytest.raises(RemoteProtocolError):
        without_extended_metadata(names + b"\x06\x01\x04js")  # cut inside the block
    with pytest.raises(RemoteProtocolError):
        extended_metadata(names + b"\x09\x01\x04json")  # a block longer than what follows
    with pytest.raises(RemoteProtocolError):
        extended_metadata(names + b"\x06\x01\x09json")  # an entry longer than its block


@pytest.mark.parametrize("packets", [TABLE_PLAIN, TABLE_EXTENDED, READ_BACK_EXTENDED],
                         ids=["plain", "extended", "read_back_extended"])
@pytest.mark.parametrize("binary", [False, True])
def test_the_relay_passes_definitions_with_the_block_untouched(packets, binary):
    data = framed(packets)
    later = encode_packet(b"\x00\x00\x00\x02\x00\x00\x00", 1)

    def check(result):
        assert result.phase is Phase.DONE and result.out == data and result.extra == later
        assert result.result_sets == 1 and result.error is None

    feed_whole_and_bytewise(lambda: Relaying(expect=Expect.RESULT, binary=binary), data + later, check)
