"""Blobs: the bytes kept beside the database, by key.

A key is a ``/``-separated path under the data home: ``files/<workspace>/<file id>`` (uploads),
``attachments/<workspace>/<run>/<name>``, ``jobs/<job id>/adapter`` (a fine-tuned model's adapter directory),
``jobs/<job id>/checkpoints/step-<n>``, ``jobs/<job id>/train.log``. The rows of the store name their blobs by key.

Two places hold them:

* the data home's local directory, always: the engines (llama.cpp, transformers) and the training process read
  and write plain local files, so a blob is used at ``home/<key>``;
* an object store when ``TRACETUNE_BLOB_URL`` names one (``s3://bucket/prefix``, or any fsspec URL, with
  ``TRACETUNE_BLOB_OPTIONS``): the copy that every server, replica and worker sees. What one machine makes is
  written locally, then :meth:`Blobs.publish`-ed (uploaded) before the row naming it is committed, and another
  machine's :meth:`Blobs.path` fetches it into its own home (into a temporary name, then renamed into place).

A published blob is never rewritten (a file id, a job's adapter, a checkpoint step are made once), so a local copy
never goes stale and the local directory is a cache of the object store. :meth:`Blobs.delete` removes both copies.

An object store that cannot be reached (or refuses) is :class:`~tracetune.errors.Unavailable` (503) naming it; what
was being stored is then not acknowledged (an upload is refused, a checkpoint not recorded).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tracetune.errors import InvalidInput, Unavailable


def _checked(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"a blob key is a relative path without '.', '..' or empty parts, not {key!r}")
    return key


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """``data`` at ``path``: a temporary file in the same directory, fsync, rename, fsync the directory (a reader
    sees the old bytes or all the new ones, and an acknowledged write survives power loss)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class Blobs:
    """The blobs of one data home, optionally shared through an object store (see the module docstring)."""

    def __init__(self, home: Path, url: str | None = None, options: Mapping[str, Any] | None = None) -> None:
        self.home = Path(home)
        self.url = url
        self._fs: Any = None
        self._root = ""
        if url:
            try:
                import fsspec
            except ImportError:  # pragma: no cover - fsspec is a dependency
                raise InvalidInput("TRACETUNE_BLOB_URL needs fsspec", field="blob_url") from None
            try:
                self._fs, self._root = fsspec.core.url_to_fs(url, **dict(options or {}))
            except (ImportError, ValueError) as exc:
                raise InvalidInput(
                    f"TRACETUNE_BLOB_URL {url!r} cannot be opened: {exc}. For s3:// install the `s3` extra "
                    "(pip install 'tracetune[s3]') and give the endpoint and keys in TRACETUNE_BLOB_OPTIONS or "
                    "the AWS_* environment variables.",
                    field="blob_url",
                ) from None
            self._root = self._root.rstrip("/")

    @property
    def shared(self) -> bool:
        """Whether an object store holds the shared copy."""
        return self._fs is not None

    def _remote(self, key: str) -> str:
        return f"{self._root}/{key}" if self._root else key

    def _call(self, what: str, key: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on the object store; its failure as ``Unavailable`` naming the store and key."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise Unavailable(
                f"the object store {self.url} could not {what} {key!r}: {type(exc).__name__}: {exc}. Check "
                "TRACETUNE_BLOB_URL / TRACETUNE_BLOB_OPTIONS and that the store is up, then retry.",
                code="blob_store_unavailable",
            ) from exc

    def location(self, key: str) -> str:
        """Where ``key`` is, to show (nothing is fetched): its local path when this home has it, else its URL in
        the object store."""
        local = self.home / _checked(key)
        if self._fs is None or local.exists():
            return str(local)
        return f"{self.url.rstrip('/')}/{key}" if self.url else str(local)

    def path(self, key: str) -> Path:
        """The local path of ``key``, fetched from the object store first when this home lacks it. A blob found
        nowhere is the local path all the same (callers say what is missing)."""
        local = self.home / _checked(key)
        if self._fs is None or local.exists():
            return local
        remote = self._remote(key)
        self._fs.invalidate_cache(remote)
        if not self._call("look for", key, self._fs.exists, remote):
            return local
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{secrets.token_hex(4)}.fetching")
        try:
            if self._call("read", key, self._fs.isdir, remote):
                tmp.mkdir()
                self._call("fetch", key, self._fs.get, remote + "/", str(tmp) + "/", recursive=True)
            else:
                self._call("fetch", key, self._fs.get, remote, str(tmp))
            try:
                os.replace(tmp, local)
            except OSError:
                if not local.exists():  # not a concurrent fetch that won the rename
                    raise
        finally:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        return local

    def write(self, key: str, data: bytes) -> Path:
        """Store ``data`` at ``key`` durably (locally, then published); its local path. When publishing fails
        nothing is left behind."""
        local = self.home / _checked(key)
        write_durably(local, data)
        try:
            self.publish(key)
        except BaseException:
            local.unlink(missing_ok=True)
            raise
        return local

    def publish(self, key: str) -> None:
        """Upload the local file or directory ``key`` to the object store (nothing to do without one)."""
        if self._fs is None:
            return
        local = self.home / _checked(key)
        remote = self._remote(key)
        if local.is_dir():
            self._call("store", key, self._fs.put, str(local) + "/", remote, recursive=True)
        else:
            self._call("store", key, self._fs.put, str(local), remote)
        self._fs.invalidate_cache(remote)

    def delete(self, key: str) -> None:
        """Remove ``key`` (a file or a directory) from this home and from the object store."""
        local = self.home / _checked(key)
        if local.is_dir():
            shutil.rmtree(local, ignore_errors=True)
        else:
            local.unlink(missing_ok=True)
        if self._fs is not None:
            remote = self._remote(key)
            self._fs.invalidate_cache(remote)
            if self._call("look for", key, self._fs.exists, remote):
                self._call("delete", key, self._fs.rm, remote, recursive=True)


def blobs_from_settings(settings: Any) -> Blobs:
    """The blobs of ``settings.home``, shared through ``settings.blob_url`` when it is set."""
    return Blobs(settings.home, settings.blob_url, settings.blob_options)
