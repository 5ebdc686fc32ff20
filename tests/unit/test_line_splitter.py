"""Splitting the watch stream into lines: on b"\\n" only, whatever the chunking."""

from __future__ import annotations

import json

from rx_informer.protocol.lines import LineSplitter


def feed_all(chunks: list[bytes]) -> list[bytes]:
    splitter = LineSplitter()
    lines: list[bytes] = []
    for chunk in chunks:
        lines.extend(splitter.feed(chunk))
    return lines


def test_unicode_line_separators_inside_json_do_not_split() -> None:
    line = json.dumps({"v": "a\u2028b\u0085c\u2029d\r"}, ensure_ascii=False).encode()
    assert feed_all([line + b"\n"]) == [line]


def test_multibyte_text_sent_in_4095_byte_chunks_is_reassembled() -> None:
    """Case 7: a value of 50,000 multi-byte characters in 4,095-byte chunks."""
    line = json.dumps({"v": "\u00e9\u6f22\U0001f600" * 50_000}, ensure_ascii=False).encode()
    data = line + b"\n" + line + b"\n"
    chunks = [data[i : i + 4095] for i in range(0, len(data), 4095)]
    assert feed_all(chunks) == [line, line]
    assert json.loads(feed_all(chunks)[0])["v"][:3] == "\u00e9\u6f22\U0001f600"


def test_partial_line_is_held_and_reported_as_pending() -> None:
    """Case 6: a cut line produces nothing and is visible as pending bytes."""
    splitter = LineSplitter()
    assert splitter.feed(b'{"type":"ADDED","obj') == []
    assert splitter.pending == len(b'{"type":"ADDED","obj')
    assert splitter.feed(b'ect":{}}\n') == [b'{"type":"ADDED","object":{}}']
    assert splitter.pending == 0


def test_blank_lines_and_several_lines_per_chunk() -> None:
    assert feed_all([b"a\n\nb\n  \nc", b"\n"]) == [b"a", b"b", b"c"]


def test_a_line_of_many_mebibytes_in_small_chunks() -> None:
    """Case 8: 1.5 MiB in one line, fed 1 KiB at a time."""
    line = b"x" * (3 * 512 * 1024)
    chunks = [line[i : i + 1024] for i in range(0, len(line), 1024)] + [b"\n"]
    assert feed_all(chunks) == [line]
