# The corpus: client sessions real drivers sent after login, one JSON file each in corpus/.
#
# A file holds what a replay needs to log in the way the driver did (its capability flags,
# collation, user, schema) and, in order, every packet the driver sent after its login, with
# its sequence id as sent and its role:
#
#   command  a command (sequence id 0)
#   infile   LOCAL INFILE data sent after the server asked for a file (ids 2, 3, ..., then
#            the empty packet that ends the file)
#   auth     the answer to an auth switch during COM_CHANGE_USER (computed anew at replay,
#            since it depends on the scramble of that connection)
#
# `note` is a readable summary for people; `payload` is the hex of the bytes.
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pymysql.constants import COMMAND

CORPUS_DIR = Path(__file__).with_name("corpus")

COMMAND_NAMES = {getattr(COMMAND, n): n for n in dir(COMMAND) if n.startswith("COM_")}
COMMAND_NAMES[0x1F] = "COM_RESET_CONNECTION"
TEXT_COMMANDS = (COMMAND.COM_QUERY, COMMAND.COM_STMT_PREPARE, COMMAND.COM_INIT_DB)


@dataclass
class CorpusPacket:
    seq: int
    role: str  # command | infile | auth
    payload: bytes
    note: str = ""

    def to_json(self) -> dict:
        return {"seq": self.seq, "role": self.role, "note": self.note or describe(self.payload, self.role),
                "payload": self.payload.hex()}

    @classmethod
    def from_json(cls, data: dict) -> CorpusPacket:
        return cls(data["seq"], data["role"], bytes.fromhex(data["payload"]), data.get("note", ""))


@dataclass
class CorpusSession:
    name: str
    about: str
    driver: str
    capabilities: int
    charset: int
    user: str
    database: str | None
    packets: list[CorpusPacket] = field(default_factory=list)

    def save(self, directory: Path = CORPUS_DIR) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}.json"
        data = asdict(self)
        data["capabilities"] = f"0x{self.capabilities:08x}"
        data["packets"] = [p.to_json() for p in self.packets]
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> CorpusSession:
        data = json.loads(path.read_text())
        data["capabilities"] = int(data["capabilities"], 16)
        data["packets"] = [CorpusPacket.from_json(p) for p in data["packets"]]
        return cls(**data)


def load_corpus(directory: Path = CORPUS_DIR) -> list[CorpusSession]:
    sessions = [CorpusSession.load(path) for path in sorted(directory.glob("*.json"))]
    if not sessions:
        raise FileNotFoundError(f"no corpus in {directory}: run `python -m tests.fuzz.capture`")
    return sessions


def describe(payload: bytes, role: str = "command") -> str:
    if role != "command":
        return f"{role} data, {len(payload)} bytes"
    if not payload:
        return "empty packet"
    name = COMMAND_NAMES.get(payload[0], f"command 0x{payload[0]:02x}")
    if payload[0] in TEXT_COMMANDS:
        text = payload[1:].decode("utf-8", "replace")
        return f"{name} {text[:160]}{'...' if len(text) > 160 else ''}"
    return f"{name}, {len(payload) - 1} bytes of arguments"
