"""The XML plumbing of the CVAT reader: a hardened prolog check and a SAX parser target.

The file is fed in 1 MiB pieces to an :class:`lxml.etree.XMLParser` with the parser target
:class:`Target` (libxml2's SAX events, no tree): each ``<image>``'s children arrive as
attribute dicts (:data:`Record`), ``<meta>`` and each ``<track>`` are small and are built
as elements.

Security: :func:`read_prolog` refuses a DOCTYPE that declares any entity from the
document's prolog, before the parser sees a byte of it; the reader's parser never resolves
entities, loads no DTD and fetches nothing from the network.
"""

from __future__ import annotations

import re
from typing import IO, Any

from lxml import etree

from dlpipe.errors import UserError

CHUNK = 1 << 20  # bytes fed to the parser at a time
_PROLOG_LIMIT = 16 << 20  # longest prolog (declaration, DOCTYPE, comments) accepted
_COMMENT = re.compile(rb"<!--.*?-->", re.S)
_ROOT_START = re.compile(rb"<[^!?]")
_ENTITIES_REFUSED = (
    "XML declares entities in its DOCTYPE; refused (CVAT never writes them, "
    "and they are the vehicle of entity-expansion and external-entity attacks)"
)


def read_prolog(stream: IO[bytes], name: str) -> bytes:
    """Read the document up to its root element's start tag (at least one chunk) and
    refuse a DOCTYPE that declares entities, before any byte reaches the parser.

    Returns the bytes read, which the caller feeds to the parser first.
    """
    head = b""
    while True:
        chunk = stream.read(CHUNK)
        head += chunk
        text = head
        if text.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16: scan its ASCII view
            text = head.decode("utf-16", errors="replace").encode("ascii", errors="replace")
        text = _COMMENT.sub(b"", text)
        root = _ROOT_START.search(text)
        prolog = text if root is None else text[: root.start()]
        if b"<!ENTITY" in prolog:
            raise UserError(_ENTITIES_REFUSED, path=name)
        if root is not None or not chunk:
            return head
        if len(head) > _PROLOG_LIMIT:
            raise UserError(
                f"no root element in the first {_PROLOG_LIMIT >> 20} MiB of the XML", path=name
            )


def syntax_error(exc: etree.XMLSyntaxError, name: str) -> UserError:
    line, col = exc.position if exc.position else (exc.lineno, 0)
    msg = str(exc.msg if hasattr(exc, "msg") else exc).split(" (line")[0]
    if "entity" in msg.lower():
        return UserError(
            f"XML entity expansion refused at line {line}, column {col}: {msg}", path=name
        )
    return UserError(f"malformed XML at line {line}, column {col}: {msg}", path=name)


#: One child of an ``<image>``: tag, attributes, position among the image's children,
#: custom ``<attribute>`` values (None when it has none).
Record = list[Any]


class Target:
    """lxml parser target: each ``<image>`` becomes (attributes, records of its children);
    ``<meta>`` and ``<track>`` (direct children of the root) are built as elements.

    Finished items queue in ``done`` as ("image", (attrib, records)), ("meta", element) or
    ("track", element); nothing else is kept, so memory is one image (or track) at most.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.image: dict[str, str] | None = None
        self.records: list[Record] = []
        self.attr_name: str | None = None  # the open <attribute> of a shape
        self.text: list[str] = []
        self.builder: etree.TreeBuilder | None = None
        self.done: list[tuple[str, Any]] = []

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self.depth += 1
        depth = self.depth
        if self.builder is not None:
            self.builder.start(tag, attrib)
        elif depth == 3 and self.image is not None:
            self.records.append([tag, attrib, len(self.records), None])
        elif depth == 4 and self.image is not None and tag == "attribute":
            self.attr_name, self.text = attrib.get("name", ""), []
        elif depth == 2:
            if tag == "image":
                self.image, self.records = attrib, []
            elif tag in ("meta", "track"):
                self.builder = etree.TreeBuilder()
                self.builder.start(tag, attrib)

    def data(self, text: str) -> None:
        if self.builder is not None:
            self.builder.data(text)
        elif self.attr_name is not None:
            self.text.append(text)

    def end(self, tag: str) -> None:
        depth = self.depth
        self.depth -= 1
        if self.builder is not None:
            self.builder.end(tag)
            if depth == 2:
                self.done.append((tag, self.builder.close()))
                self.builder = None
        elif depth == 4 and self.attr_name is not None:
            record = self.records[-1]
            if record[3] is None:
                record[3] = {}
            record[3][self.attr_name] = "".join(self.text)
            self.attr_name = None
        elif depth == 2 and self.image is not None:
            self.done.append(("image", (self.image, self.records)))
            self.image, self.records = None, []

    def close(self) -> None:
        return None

    def take(self) -> list[tuple[str, Any]]:
        done, self.done = self.done, []
        return done
