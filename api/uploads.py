"""The files of a request: the raw body, or the parts of a multipart/form-data body parsed in memory.

Starlette's own form parser spools uploads over 1 MB to temporary files; this one keeps everything in memory (the
body is already in memory and bounded by the request limit), so the server never writes an upload to disk.
"""

from __future__ import annotations

from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from .errors import ApiError

FILE_FIELDS = ("file", "files")


@dataclass
class Upload:
    data: bytes
    filename: str | None = None  # as the client named it; echoed back to the client in batch results, never logged


def is_multipart(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == "multipart/form-data"


class _Parts:
    """python-multipart's callbacks: every part's headers and bytes, collected in memory."""

    EVENTS = ("on_part_begin", "on_part_data", "on_header_field", "on_header_value", "on_header_end")

    def __init__(self):
        self.parts: list[tuple[dict, bytearray]] = []
        self._name = self._value = b""

    def on_part_begin(self):
        self.parts.append(({}, bytearray()))

    def on_part_data(self, data, start, end):
        self.parts[-1][1].extend(data[start:end])

    def on_header_field(self, data, start, end):
        self._name += data[start:end]

    def on_header_value(self, data, start, end):
        self._value += data[start:end]

    def on_header_end(self):
        self.parts[-1][0][self._name.lower()] = self._value
        self._name = self._value = b""


def multipart_files(body: bytes, content_type: str, max_files: int) -> list[Upload]:
    """The parts named `file` (or `files`), in order."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise ApiError(400, "multipart/form-data without a boundary")
    collected = _Parts()
    try:
        parser = MultipartParser(boundary, {event: getattr(collected, event) for event in _Parts.EVENTS})
        parser.write(body)
        parser.finalize()
    except (FormParserError, ValueError) as e:
        raise ApiError(400, f"malformed multipart/form-data body ({type(e).__name__})") from None
    files = []
    for headers, data in collected.parts:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        if disposition.get(b"name", b"").decode("utf-8", "replace") not in FILE_FIELDS:
            continue
        filename = disposition.get(b"filename")
        files.append(Upload(bytes(data), filename.decode("utf-8", "replace") if filename else None))
        if len(files) > max_files:
            raise ApiError(413, f"more than {max_files} files in one request")
    return files


def files_of(body: bytes, content_type: str | None, max_files: int) -> list[Upload]:
    """A multipart body's file parts, or the whole body as one file (whatever its Content-Type says: the bytes are
    sniffed, never the declared type or the name)."""
    if is_multipart(content_type):
        files = multipart_files(body, content_type, max_files)
        if not files:
            raise ApiError(400, "multipart/form-data body without a part named 'file'")
        return files
    return [Upload(body)]
