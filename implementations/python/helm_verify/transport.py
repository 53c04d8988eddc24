"""Transport wrappers of spec/evidencepack.md §6: raw tar, zstd, gzip.

A source hands out the uncompressed tar bytes in order. When the wrapper is
corrupt, it first hands out every byte it could decode, then remembers the error;
``raise_pending`` raises it. So a reader sees the same bytes, in the same order,
as a streaming reader would before the transport fails.
"""

import zlib

from .errors import VerifyError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"

MAX_WINDOW = 8 * 1024 * 1024
MAX_OUTPUT = 64 * 1024**3
RATIO_FLOOR = 1024 * 1024
MAX_RATIO = 200
IN_CHUNK = 1024


def _transport_error(detail: str) -> VerifyError:
    return VerifyError("PACK_TRANSPORT_INVALID", None, detail)


class RawSource:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def read(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def raise_pending(self) -> None:
        pass

    def finish(self) -> None:
        """Called after the tar end: the wrapper must end exactly here."""


class _DecompressingSource:
    """Common buffering, limits and error deferral."""

    def __init__(self, data: bytes):
        self.data = data
        self.in_pos = 0
        self.total_out = 0
        self.buf = bytearray()
        self.pending: VerifyError | None = None
        self.eof = False  # the frame/member ended

    def _consumed(self) -> int:
        return self.in_pos

    def _check_limits(self) -> None:
        if self.total_out > MAX_OUTPUT:
            raise _transport_error("more than 64 GiB of output")
        if self.total_out > RATIO_FLOOR and self.total_out > MAX_RATIO * self._consumed():
            raise _transport_error("expansion ratio above 200")

    def _fill(self, want: int) -> None:
        while len(self.buf) < want and self.pending is None and not self.eof:
            try:
                self._step()
                self._check_limits()
            except VerifyError as e:
                self.pending = e

    def read(self, n: int) -> bytes:
        if len(self.buf) < n:
            self._fill(n)
        if not self.buf and self.pending is not None:
            raise self.pending
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def raise_pending(self) -> None:
        if self.pending is not None:
            raise self.pending

    def finish(self) -> None:
        self._fill(1)
        if self.buf:
            return  # the caller reports TAR_TRAILING_DATA
        self.raise_pending()
        if not self.eof:
            raise _transport_error("truncated stream")
        if self.in_pos < len(self.data) or self._unused():
            raise _transport_error("bytes after the frame")

    def _unused(self) -> bool:
        return False


class ZstdSource(_DecompressingSource):
    def __init__(self, data: bytes):
        super().__init__(data)
        import zstandard

        self._zstd = zstandard
        try:
            params = zstandard.get_frame_parameters(data)
        except zstandard.ZstdError as e:
            raise _transport_error("bad zstd frame header: %s" % e)
        if params.window_size > MAX_WINDOW:
            raise _transport_error("zstd window above 8 MiB")
        self.obj = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW).decompressobj(
            read_across_frames=False
        )
        self.unused = b""

    def _step(self) -> None:
        if self.in_pos >= len(self.data):
            raise _transport_error("truncated zstd stream")
        chunk = self.data[self.in_pos : self.in_pos + IN_CHUNK]
        self.in_pos += len(chunk)
        try:
            out = self.obj.decompress(chunk)
        except self._zstd.ZstdError as e:
            raise _transport_error("corrupt zstd stream: %s" % e)
        self.total_out += len(out)
        self.buf += out
        if self.obj.eof:
            self.eof = True
            self.unused = self.obj.unused_data

    def _unused(self) -> bool:
        return bool(self.unused)


class GzipSource(_DecompressingSource):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.obj = zlib.decompressobj(wbits=16 + 15)
        self.tail = b""

    def _consumed(self) -> int:
        return self.in_pos - len(self.tail)

    def _step(self) -> None:
        if self.tail:
            chunk = self.tail
        else:
            if self.in_pos >= len(self.data):
                raise _transport_error("truncated gzip stream")
            chunk = self.data[self.in_pos : self.in_pos + IN_CHUNK]
            self.in_pos += len(chunk)
        try:
            out = self.obj.decompress(chunk, 256 * 1024)
        except zlib.error as e:
            raise _transport_error("corrupt gzip stream: %s" % e)
        self.tail = self.obj.unconsumed_tail
        self.total_out += len(out)
        self.buf += out
        if self.obj.eof:
            self.eof = True

    def _unused(self) -> bool:
        return bool(self.obj.unused_data) or bool(self.tail)


def open_source(data: bytes):
    """Detect the wrapper by its magic bytes (not the file name)."""
    if data[:4] == ZSTD_MAGIC:
        return ZstdSource(data)
    if data[:2] == GZIP_MAGIC:
        return GzipSource(data)
    return RawSource(data)
