"""Incremental ``multipart/form-data`` reading: the one file field, chunk by chunk, as it arrives.

FastAPI's ``UploadFile`` parses (and spools to disk) the whole form before any dependency runs, so the token and
the size cap would be checked only after the body had cost disk. Here the route authenticates first, then this
parser hands the file's bytes on as the request streams in; nothing is buffered beyond one received chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

from api.core.errors import FormError

MAX_PART_HEADER_BYTES = 16 * 1024


@dataclass
class _State:
    field_name: str
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    header_bytes: int = 0
    disposition: bytes = b""
    in_file: bool = False
    files_seen: int = 0
    out: list[bytes] = field(default_factory=list)
    finished: bool = False


def boundary_of(content_type: str | None) -> bytes:
    if not content_type:
        raise FormError("Content-Type multipart/form-data with a boundary is required")
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise FormError("Content-Type multipart/form-data with a boundary is required")
    return options[b"boundary"]


async def file_field(content_type: str | None, body: AsyncIterator[bytes], name: str = "file") -> AsyncIterator[bytes]:
    """Yield the bytes of form field ``name`` (the only field accepted) while ``body`` streams in."""
    state = _State(field_name=name)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state.header_bytes += end - start
        if state.header_bytes > MAX_PART_HEADER_BYTES:
            raise FormError("part headers are too large")
        state.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state.header_bytes += end - start
        if state.header_bytes > MAX_PART_HEADER_BYTES:
            raise FormError("part headers are too large")
        state.header_value += data[start:end]

    def on_header_end() -> None:
        if bytes(state.header_field).lower() == b"content-disposition":
            state.disposition = bytes(state.header_value)
        state.header_field.clear()
        state.header_value.clear()

    def on_headers_finished() -> None:
        kind, options = parse_options_header(state.disposition)
        if kind != b"form-data" or options.get(b"name", b"").decode("utf-8", "replace") != state.field_name:
            raise FormError(f"the form must have exactly one field, {state.field_name!r}")
        state.files_seen += 1
        if state.files_seen > 1:
            raise FormError(f"the form must have exactly one field, {state.field_name!r}")
        state.in_file = True

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state.in_file:
            state.out.append(bytes(data[start:end]))

    def on_part_end() -> None:
        state.in_file = False
        state.disposition = b""
        state.header_bytes = 0

    def on_end() -> None:
        state.finished = True

    parser = MultipartParser(
        boundary_of(content_type),
        callbacks={
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_end": on_end,
        },
    )
    async for chunk in body:
        try:
            parser.write(chunk)
        except FormError:
            raise
        except Exception as exc:  # the parser's own errors: a malformed body
            raise FormError(f"malformed multipart body: {exc}") from None
        while state.out:
            yield state.out.pop(0)
    parser.finalize()
    while state.out:
        yield state.out.pop(0)
    if not state.finished or state.files_seen != 1:
        raise FormError(f"the form ended before its field {state.field_name!r} was complete")
