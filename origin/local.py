"""``LocalOrigin``: objects as files under one root directory (demo mode, tests)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import socket
import stat
import uuid
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter

from origin.base import ObjectInfo, content_type_for
from origin.errors import ObjectNotFound, ObjectTooLarge, OriginError, OriginUnavailable
from origin.keys import split_key, validate_prefix

__all__ = ["LocalOrigin"]

log = logging.getLogger(__name__)

_UNCACHEABLE = "no-store"
# Headers that need FileResponse's handling (partial or conditional answers).
_CONDITIONAL = frozenset(
    {
        hdrs.RANGE,
        hdrs.IF_NONE_MATCH,
        hdrs.IF_MODIFIED_SINCE,
        hdrs.IF_RANGE,
        hdrs.IF_MATCH,
        hdrs.IF_UNMODIFIED_SINCE,
    }
)


class _ObjectFileResponse(web.FileResponse):
    """``FileResponse`` whose error answers (416, 412, a 404 race) are never cached.

    ``FileResponse`` answers Range (206/416), If-None-Match/If-Modified-Since (304) and
    HEAD itself and keeps the headers it was given on every answer; a CDN must not keep
    a 416 under the object's cache key, so errors get ``Cache-Control: no-store``.
    """

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        """Send the file once; aiohttp calls ``prepare`` again on a returned response,
        and ``FileResponse`` would otherwise try to send it a second time."""
        if self.prepared:
            return None
        return await super().prepare(request)

    def set_status(self, status: int, reason: str | None = None) -> None:
        """Set the status; error statuses also replace Cache-Control."""
        super().set_status(status, reason)
        if status >= 400:
            self.headers[hdrs.CACHE_CONTROL] = _UNCACHEABLE


@functools.lru_cache(maxsize=4096)
def _http_date(mtime: float) -> str:
    """An HTTP date (RFC 9110 IMF-fixdate); memoised per file time on the segment path."""
    return formatdate(mtime, usegmt=True)


def _etag_of(st: os.stat_result) -> str:
    """The entity-tag ``FileResponse`` sends for this file, quoted as in the header."""
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}"'


def _plain_socket(transport: asyncio.BaseTransport | None) -> socket.socket | None:
    """The transport's TCP socket, or None (no transport, TLS, not a socket)."""
    if transport is None or transport.get_extra_info("sslcontext") is not None:
        return None
    sock: socket.socket | None = transport.get_extra_info("socket")
    return sock


def _native_sendfile(loop: asyncio.AbstractEventLoop) -> bool:
    """The loop implements ``loop.sendfile`` (asyncio's does; uvloop inherits the
    abstract method, which only raises ``NotImplementedError``)."""
    return type(loop).sendfile is not asyncio.AbstractEventLoop.sendfile


async def _send_file(transport: asyncio.Transport, fd: int, size: int) -> int:
    """Send what can go out now from ``fd`` without copying it through Python; return
    the offset reached. The loop's own sendfile where it has one (it waits for the
    socket and sends it all); otherwise, or when the transport cannot (TLS),
    :func:`_sendfile_while_writable`. Under uvloop this costs no file object and no
    exception per request (~10 us of a segment request's CPU under wrk)."""
    loop = asyncio.get_running_loop()
    if _native_sendfile(loop):
        try:
            with os.fdopen(fd, "rb", closefd=False) as fobj:
                await loop.sendfile(transport, fobj, 0, size, fallback=False)
            return size
        except asyncio.SendfileNotAvailableError:
            pass
    return _sendfile_while_writable(transport, fd, size)


def _sendfile_while_writable(transport: asyncio.BaseTransport, fd: int, size: int) -> int:
    """Send what the socket takes now straight from the page cache; return the offset
    reached (the caller writes the rest through the transport, which waits for the
    socket).

    uvloop has no ``loop.sendfile``; without this every byte is read into Python and
    copied again into the socket. Only on a plain TCP transport whose own buffer is
    empty (the response head already went out), so nothing the transport holds can be
    overtaken: one non-blocking ``sendfile(2)`` usually takes a whole segment on a
    connection that keeps up. 0 when the transport is TLS or not a socket."""
    sock = _plain_socket(transport)
    # uvloop's transports are not registered as asyncio.WriteTransport: duck-typed
    buffered = getattr(transport, "get_write_buffer_size", None)
    if sock is None or buffered is None or buffered():
        return 0
    offset = 0
    out = sock.fileno()
    while offset < size:
        try:
            sent = os.sendfile(out, fd, offset, size - offset)
        except (BlockingIOError, InterruptedError):
            break
        except OSError as err:  # the viewer hung up (EPIPE, ECONNRESET)
            raise ConnectionResetError(str(err)) from err
        if sent == 0:  # the file ended early (truncated meanwhile): let the caller see it
            break
        offset += sent
    return offset


class LocalOrigin:
    """An :class:`~origin.base.OriginStore` over a directory.

    Keys map to paths under ``root``; the resolved real path of every object (symlinks
    followed) must stay inside ``root``, or the object does not exist. Files are sent
    with ``web.FileResponse`` (sendfile); other file I/O runs in worker threads.
    """

    def __init__(self, root: Path, *, chunk_size: int = 256 * 1024) -> None:
        self._root = root.resolve()
        self._root_text = str(self._root)
        self._root_prefix = os.path.join(self._root_text, "")
        self._chunk_size = chunk_size

    @property
    def root(self) -> Path:
        """The resolved root directory."""
        return self._root

    # -- paths -----------------------------------------------------------------

    def _candidate(self, key: str) -> Path:
        """The (unresolved) path for a validated key."""
        return self._root.joinpath(*split_key(key))

    def _inside(self, path: Path | str) -> bool:
        """Whether a resolved path is the root or under it."""
        real = str(path)
        return real == self._root_text or real.startswith(self._root_prefix)

    def _open_regular(self, key: str) -> tuple[Path, os.stat_result]:
        """Resolve ``key`` to a regular file inside the root (blocking; run in a thread)."""
        candidate = self._candidate(key)
        try:
            real = candidate.resolve(strict=True)
            st = real.stat()
        except (OSError, RuntimeError) as err:  # RuntimeError: symlink loop (3.11)
            raise ObjectNotFound(key) from err
        if not self._inside(real):
            log.warning("object %s resolves outside the origin root; refused", key)
            raise ObjectNotFound(key)
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFound(key)
        return real, st

    def _open_fd(self, key: str) -> tuple[int, os.stat_result]:
        """Open ``key``'s regular file inside the root: the hot path's form of
        :meth:`_open_regular`, checked on the opened file itself.

        One ``open``, one ``fstat`` and (Linux) one ``readlink`` of ``/proc/self/fd``
        for where the kernel resolved it, against ``Path.resolve``'s ``lstat`` per path
        component in Python (12 % of a segment request's CPU in py-spy). ``O_NONBLOCK``
        so that a FIFO planted in the tree cannot hang the loop before it is refused."""
        candidate = os.path.join(self._root_text, *split_key(key))
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as err:  # missing, a symlink loop, not permitted
            raise ObjectNotFound(key) from err
        try:
            st = os.fstat(fd)
            try:
                real = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:  # no /proc here: resolve the name instead
                real = str(Path(candidate).resolve(strict=True))
            if not self._inside(real):
                log.warning("object %s resolves outside the origin root; refused", key)
                raise ObjectNotFound(key)
            if not stat.S_ISREG(st.st_mode):
                raise ObjectNotFound(key)
        except OSError as err:
            os.close(fd)
            raise ObjectNotFound(key) from err
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def _writable_parent(self, key: str) -> Path:
        """Create the parent directory of ``key`` and check it is inside the root."""
        candidate = self._candidate(key)
        candidate.parent.mkdir(parents=True, exist_ok=True)
        parent = candidate.parent.resolve(strict=True)
        if not self._inside(parent):
            raise OriginError(f"parent of {key} resolves outside the origin root")
        return parent / candidate.name

    # -- reads -----------------------------------------------------------------

    def _info(self, key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=_etag_of(st),
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            content_type=content_type_for(key),
        )

    async def head(self, key: str) -> ObjectInfo:
        """Metadata of a file; ETag as ``FileResponse`` computes it."""
        _, st = await asyncio.to_thread(self._open_regular, key)
        return self._info(key, st)

    async def exists(self, key: str) -> bool:
        """Whether a regular file is stored under ``key`` inside the root."""
        try:
            await asyncio.to_thread(self._open_regular, key)
        except ObjectNotFound:
            return False
        return True

    def _read_small(self, key: str, max_size: int) -> bytes:
        real, _ = self._open_regular(key)
        try:
            with real.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > max_size:
                    raise ObjectTooLarge(key, size, max_size)
                data = f.read(max_size + 1)
        except OSError as err:
            raise ObjectNotFound(key) from err
        if len(data) > max_size:  # grew between fstat and read
            raise ObjectTooLarge(key, len(data), max_size)
        return data

    async def read_bytes(self, key: str, *, max_size: int) -> bytes:
        """Read a small file whole, in a worker thread."""
        return await asyncio.to_thread(self._read_small, key, max_size)

    async def serve(
        self, request: web.Request, key: str, *, cache_control: str
    ) -> web.StreamResponse:
        """Send the file and return the prepared response.

        A plain GET (the hot path: a player fetching a segment) takes the lean path of
        :meth:`_send_whole`; Range, conditional and HEAD requests go to ``FileResponse``
        (Range, 304, 416). The response is prepared (sent) here, as the S3 store does,
        so callers see the same contract from both stores.
        """
        if request.method == "GET" and not any(h in request.headers for h in _CONDITIONAL):
            return await self._send_whole(request, key, cache_control)
        real, _ = await asyncio.to_thread(self._open_regular, key)
        response = _ObjectFileResponse(
            real,
            chunk_size=self._chunk_size,
            headers={
                hdrs.CONTENT_TYPE: content_type_for(key),
                hdrs.CACHE_CONTROL: cache_control,
            },
        )
        try:
            await response.prepare(request)
        except ConnectionResetError:
            log.debug("client went away while %s was sent", key)
        return response

    async def _send_whole(
        self, request: web.Request, key: str, cache_control: str
    ) -> web.StreamResponse:
        """Whole-file GET without ``FileResponse``'s two executor round trips.

        The path is resolved and the file opened inline: a few syscalls answered from
        the dentry and page cache (tens of microseconds), cheaper than a thread hop.
        Bytes go out with the loop's native sendfile where it has one (asyncio); under
        uvloop, which has none, with ``sendfile(2)`` on the socket for as much as it
        takes at once, then the rest in chunks read with ``pread`` and written with
        backpressure (:func:`_sendfile_while_writable`).
        """
        fd, st = self._open_fd(key)
        try:
            size = st.st_size
            response = web.StreamResponse(
                headers={
                    hdrs.CONTENT_TYPE: content_type_for(key),
                    hdrs.CACHE_CONTROL: cache_control,
                    hdrs.ETAG: _etag_of(st),
                    hdrs.LAST_MODIFIED: _http_date(st.st_mtime),
                    hdrs.ACCEPT_RANGES: "bytes",
                }
            )
            response.content_length = size
            try:
                # no TCP_CORK around the head and the file: measured under wrk (1 MB
                # segments on loopback) it made each sendfile(2) ~3x slower and cost
                # ~20 % of the throughput, for one small packet less
                await response.prepare(request)
                transport = request.transport
                if transport is None:
                    raise ConnectionResetError("client gone")
                offset = await _send_file(transport, fd, size)
                while offset < size:
                    chunk = os.pread(fd, min(self._chunk_size, size - offset), offset)
                    if not chunk:
                        break
                    offset += len(chunk)
                    await response.write(chunk)
                await response.write_eof()
            except (ConnectionResetError, ConnectionError):
                log.debug("client went away while %s was sent", key)
        finally:
            os.close(fd)
        return response

    # -- writes ----------------------------------------------------------------

    def _write_atomically(self, key: str, data: bytes | None, source: Path | None) -> None:
        target = self._writable_parent(key)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            if source is not None:
                shutil.copyfile(source, tmp)
            else:
                tmp.write_bytes(data or b"")
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def writable_path(self, key: str) -> Path:
        """The file an object is stored in, its folder created (blocking: run in a
        thread); for writers that stream into it themselves (the admin's uploads)."""
        return self._writable_parent(key)

    def _copy_out(self, key: str, dest: Path) -> int:
        real, st = self._open_regular(key)
        shutil.copyfile(real, dest)
        return st.st_size

    async def get_file(self, key: str, dest: Path) -> int:
        """Copy the file under ``key`` to ``dest``."""
        return await asyncio.to_thread(self._copy_out, key, dest)

    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        """Write ``data`` atomically (temporary file, then rename).

        ``content_type`` is not stored: types come from the key's extension.
        """
        del content_type
        await asyncio.to_thread(self._write_atomically, key, data, None)

    async def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> None:
        """Copy the file at ``path`` atomically under ``key``."""
        del content_type
        await asyncio.to_thread(self._write_atomically, key, None, path)

    def _delete_tree(self, prefix: str) -> int:
        directory = self._root.joinpath(*split_key(validate_prefix(prefix).removesuffix("/")))
        if directory.is_symlink() or not directory.is_dir():
            return 0
        real = directory.resolve(strict=True)
        if real == self._root or not self._inside(real):
            raise OriginError(f"prefix {prefix} resolves outside the origin root")
        count = sum(len(files) for _, _, files in os.walk(real))
        shutil.rmtree(real)
        return count

    async def delete_prefix(self, prefix: str) -> int:
        """Delete the directory ``prefix`` and everything under it; return the file count."""
        return await asyncio.to_thread(self._delete_tree, prefix)

    # -- lifecycle -------------------------------------------------------------

    def _check_root(self) -> None:
        if not self._root.is_dir() or not os.access(self._root, os.R_OK | os.X_OK):
            raise OriginUnavailable(5, f"origin root {self._root} is not a readable directory")

    async def check(self) -> None:
        """Readiness: the root is a readable directory."""
        await asyncio.to_thread(self._check_root)

    async def close(self) -> None:
        """Nothing to release."""
