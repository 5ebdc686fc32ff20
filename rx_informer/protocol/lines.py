"""Split a watch stream into lines on b"\\n" only.

httpx's ``iter_lines`` also breaks on U+0085, U+2028 and other Unicode line boundaries, which
are legal inside JSON strings, so it would cut an object in two. Splitting the raw bytes keeps
multi-byte characters whole across chunks too, because b"\\n" never occurs inside one.

Each chunk is split once with ``bytes.split`` (C speed) and only a trailing partial line is
carried over, so a line of many MiB costs one join, not a rescan per chunk.
"""

from __future__ import annotations


class LineSplitter:
    """Feed chunks, get complete non-empty lines back.

    Invariant: ``_partial`` holds the pieces of the one line not yet ended by b"\\n".
    """

    __slots__ = ("_partial",)

    def __init__(self) -> None:
        self._partial: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """Return the lines that ``chunk`` completes, in order, without their b"\\n"."""
        pieces = chunk.split(b"\n")
        tail = pieces.pop()

        if pieces and self._partial:
            self._partial.append(pieces[0])
            pieces[0] = b"".join(self._partial)
            self._partial = []
        if tail:
            self._partial.append(tail)

        return [line for line in pieces if line and not line.isspace()]

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line: non-zero when a stream ends in the middle of one."""
        return sum(len(piece) for piece in self._partial)
