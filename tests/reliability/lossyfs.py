"""A FUSE file system that loses what was not synced, the way a power cut does, and its mount for tests.

What it models (a strict reading of POSIX, stricter than ext4's ordered mode, so that it finds what ext4 forgives):

- The live tree is in the FUSE process's memory: inodes (files, folders, symlinks) and every folder's entries.
  Reads, writes, creates, renames, links and unlinks change only that memory.
- The durable tree is the backing folder: `tree.json` (every durable inode: its kind, mode and, for a folder, its
  entry list) and `data/<inode>` (a file's durable content).
- `fsync`/`fdatasync` of a file makes its content (and size and mode) durable: the ranges written since the last
  sync are written to `data/<inode>`. Nothing else about the file becomes durable: not its name.
- `fsync` of a folder makes its entry list durable as it is now: every create, rename, link and unlink in that folder
  since its last sync, all at once. A child that was never durable before enters the durable tree with its mode: a
  file with empty content (its data was never synced), a folder with no entries (its own were never synced).
- A rename between two folders is two changes: the new name is durable when the target folder is synced, the old
  name is gone when the source folder is synced; until both are, a cut can show the file under both names or none.
- A power cut is a SIGKILL of the FUSE process: the memory is gone, the backing folder is the disk after the cut.
  The next mount reads it back; inodes no durable folder reaches are dropped. An fsync the cut interrupts may have
  written part of its ranges, as a disk may persist any part of an unacknowledged sync.
- Not modelled: timestamps and ownership (never durable, always "now" and root), extended attributes (refused),
  torn writes inside one acknowledged range, reordering of the writes of one sync, POSIX locks (the kernel keeps
  them, as this file system does not implement `lock`), special files.

Run `python -m tests.reliability.lossyfs BACKING MOUNTPOINT` to serve it in the foreground (libfuse 2 through
fusepy, single-threaded); `LossyMount` starts that process, cuts the power and mounts again.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fuse import FUSE, FuseOSError, Operations  # type: ignore[import-untyped]

ROOT_INO = 1
TREE = "tree.json"
DATA = "data"


@dataclass
class Node:
    """One inode: live state, and what is durable of it."""

    ino: int
    mode: int
    data: bytearray = field(default_factory=bytearray)  # a file's live content
    entries: dict[str, int] = field(default_factory=dict)  # a folder's live entries
    target: str = ""  # a symlink's target
    links: int = 0  # live names pointing here
    dirty: list[tuple[int, int]] = field(default_factory=list)  # [start, end) ranges written since the last sync
    shortest: int = 0  # the smallest size since the last sync: the durable file is cut there before the ranges go in

    @property
    def is_dir(self) -> bool:
        """Whether the inode is a folder."""
        return stat.S_ISDIR(self.mode)


class LossyFS(Operations):  # type: ignore[misc]
    """The fusepy operations: live tree in memory, durable tree in `backing`, synced only by fsync (see the module)."""

    use_ns = True
    flag_nullpath_ok = 1  # read/write/fsync by handle after an unlink (hard_remove): no path needed

    def __init__(self, backing: Path) -> None:
        self.backing = backing
        (backing / DATA).mkdir(parents=True, exist_ok=True)
        self.nodes: dict[int, Node] = {}
        self.durable: dict[str, dict[str, Any]] = {}  # tree.json's "nodes": what a cut leaves
        self.handles: dict[int, int] = {}  # file handle -> inode
        self.next_handle = 1
        self.next_ino = ROOT_INO + 1
        self._load()

    # ---- the durable tree --------------------------------------------------------------------------------------

    def _load(self) -> None:
        tree_file = self.backing / TREE
        if tree_file.exists():
            tree = json.loads(tree_file.read_text(encoding="utf-8"))
            self.next_ino = int(tree["next_ino"])
            stored: dict[str, dict[str, Any]] = tree["nodes"]
        else:
            stored = {str(ROOT_INO): {"mode": stat.S_IFDIR | 0o755, "entries": {}}}
        # Only what a durable folder reaches from the root survives; the rest was never given a durable name.
        reached: list[int] = [ROOT_INO]
        while reached:
            ino = reached.pop()
            if ino in self.nodes:
                self.nodes[ino].links += 1
                continue
            record = stored[str(ino)]
            node = Node(ino, int(record["mode"]), target=record.get("target", ""), links=1)
            if node.is_dir:
                node.entries = {name: int(child) for name, child in record["entries"].items()}
                reached.extend(node.entries.values())
            elif stat.S_ISREG(node.mode):
                content = self.backing / DATA / str(ino)
                node.data = bytearray(content.read_bytes()) if content.exists() else bytearray()
                node.shortest = len(node.data)
            self.nodes[ino] = node
            self.durable[str(ino)] = record
        for content in (self.backing / DATA).iterdir():
            if content.name not in self.durable:
                content.unlink()  # the data of an inode the cut left without a durable name
        self._write_tree()

    def _write_tree(self) -> None:
        temporary = self.backing / f"{TREE}.tmp"
        temporary.write_text(json.dumps({"next_ino": self.next_ino, "nodes": self.durable}), encoding="utf-8")
        os.replace(temporary, self.backing / TREE)

    def _record(self, node: Node) -> dict[str, Any]:
        record: dict[str, Any] = {"mode": node.mode}
        if node.is_dir:
            record["entries"] = {}
        if stat.S_ISLNK(node.mode):
            record["target"] = node.target
        return record

    def _sync_data(self, node: Node) -> None:
        if not stat.S_ISREG(node.mode):
            return
        content = self.backing / DATA / str(node.ino)
        with content.open("r+b" if content.exists() else "w+b") as handle:
            handle.truncate(node.shortest)
            for start, end in _merged(node.dirty):
                handle.seek(start)
                handle.write(node.data[start:end])
            handle.truncate(len(node.data))
        node.dirty.clear()
        node.shortest = len(node.data)
        record = self.durable.get(str(node.ino))
        if record is not None and record["mode"] != node.mode:
            record["mode"] = node.mode
            self._write_tree()

    def _sync_entries(self, node: Node) -> None:
        record = self.durable.setdefault(str(node.ino), self._record(node))
        record["entries"] = dict(node.entries)
        for child in node.entries.values():
            if str(child) not in self.durable:
                self.durable[str(child)] = self._record(self.nodes[child])
        self._write_tree()

    # ---- the live tree -----------------------------------------------------------------------------------------

    def _lookup(self, path: str) -> Node:
        node = self.nodes[ROOT_INO]
        for part in path.split("/"):
            if not part:
                continue
            if not node.is_dir:
                raise FuseOSError(errno.ENOTDIR)
            child = node.entries.get(part)
            if child is None:
                raise FuseOSError(errno.ENOENT)
            node = self.nodes[child]
        return node

    def _parent(self, path: str) -> tuple[Node, str]:
        head, _, name = path.rstrip("/").rpartition("/")
        parent = self._lookup(head)
        if not parent.is_dir:
            raise FuseOSError(errno.ENOTDIR)
        return parent, name

    def _node(self, path: str | None, fh: int | None) -> Node:
        if fh is not None and fh in self.handles:
            return self.nodes[self.handles[fh]]
        if path is None:
            raise FuseOSError(errno.EBADF)
        return self._lookup(path)

    def _new(self, path: str, mode: int, target: str = "") -> Node:
        parent, name = self._parent(path)
        if name in parent.entries:
            raise FuseOSError(errno.EEXIST)
        node = Node(self.next_ino, mode, target=target, links=1)
        self.next_ino += 1
        self.nodes[node.ino] = node
        parent.entries[name] = node.ino
        return node

    def _drop_name(self, parent: Node, name: str) -> None:
        ino = parent.entries.pop(name)
        self.nodes[ino].links -= 1

    def _open_handle(self, node: Node) -> int:
        handle = self.next_handle
        self.next_handle += 1
        self.handles[handle] = node.ino
        return handle

    # ---- the operations ----------------------------------------------------------------------------------------

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        """The inode's attributes (times are always now: not modelled)."""
        node = self._node(path, fh)
        now = time.time_ns()
        size = len(node.data) if stat.S_ISREG(node.mode) else len(node.target)
        return {
            "st_ino": node.ino,
            "st_mode": node.mode,
            "st_nlink": 2 + sum(self.nodes[child].is_dir for child in node.entries.values())
            if node.is_dir
            else node.links,
            "st_size": size,
            "st_blocks": (size + 511) // 512,
            "st_uid": os.getuid(),
            "st_gid": os.getgid(),
            "st_atime": now,
            "st_mtime": now,
            "st_ctime": now,
        }

    def readdir(self, path: str, fh: int) -> list[str]:
        """A folder's live names."""
        return [".", "..", *self._lookup(path).entries]

    def mkdir(self, path: str, mode: int) -> None:
        """A live folder (durable once its parent is synced)."""
        self._new(path, stat.S_IFDIR | (mode & 0o7777))

    def rmdir(self, path: str) -> None:
        """Remove an empty folder's name."""
        parent, name = self._parent(path)
        node = self._lookup(path)
        if not node.is_dir:
            raise FuseOSError(errno.ENOTDIR)
        if node.entries:
            raise FuseOSError(errno.ENOTEMPTY)
        self._drop_name(parent, name)

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        """A live empty file, opened."""
        return self._open_handle(self._new(path, stat.S_IFREG | (mode & 0o7777)))

    def open(self, path: str, flags: int) -> int:
        """Open a file by name."""
        node = self._lookup(path)
        if node.is_dir:
            raise FuseOSError(errno.EISDIR)
        return self._open_handle(node)

    def release(self, path: str | None, fh: int) -> int:
        """Forget a handle."""
        self.handles.pop(fh, None)
        return 0

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        """Live bytes."""
        return bytes(self._node(path, fh).data[offset : offset + size])

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        """Change the live bytes only; the range is durable at the next fsync."""
        node = self._node(path, fh)
        end = offset + len(data)
        if offset > len(node.data):
            node.data.extend(bytes(offset - len(node.data)))
        node.data[offset:end] = data
        node.dirty.append((offset, end))
        return len(data)

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> None:
        """Change the live size only."""
        node = self._node(path, fh)
        if length < len(node.data):
            del node.data[length:]
            node.shortest = min(node.shortest, length)
            node.dirty = [(start, min(end, length)) for start, end in node.dirty if start < length]
        else:
            node.dirty.append((len(node.data), length))
            node.data.extend(bytes(length - len(node.data)))

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        """Make the file's content durable (not its name)."""
        self._sync_data(self._node(path, fh))
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        """Make the folder's entry list durable."""
        self._sync_entries(self._lookup(path))
        return 0

    def unlink(self, path: str) -> None:
        """Remove a live name; open handles keep the inode."""
        parent, name = self._parent(path)
        if self._lookup(path).is_dir:
            raise FuseOSError(errno.EISDIR)
        self._drop_name(parent, name)

    def rename(self, old: str, new: str) -> None:
        """Move a live name, replacing what the new name held (an empty folder or a non-folder)."""
        old_parent, old_name = self._parent(old)
        node = self._lookup(old)
        new_parent, new_name = self._parent(new)
        if node.is_dir and (new + "/").startswith(old.rstrip("/") + "/"):
            raise FuseOSError(errno.EINVAL)
        existing = new_parent.entries.get(new_name)
        if existing == node.ino:
            return
        if existing is not None:
            replaced = self.nodes[existing]
            if replaced.is_dir and (not node.is_dir or replaced.entries):
                raise FuseOSError(errno.EISDIR if not node.is_dir else errno.ENOTEMPTY)
            if node.is_dir and not replaced.is_dir:
                raise FuseOSError(errno.ENOTDIR)
            self._drop_name(new_parent, new_name)
        del old_parent.entries[old_name]
        new_parent.entries[new_name] = node.ino

    def link(self, target: str, source: str) -> None:
        """Give the file at `source` the live name `target` too."""
        node = self._lookup(source)
        if node.is_dir:
            raise FuseOSError(errno.EPERM)
        parent, name = self._parent(target)
        if name in parent.entries:
            raise FuseOSError(errno.EEXIST)
        parent.entries[name] = node.ino
        node.links += 1

    def symlink(self, target: str, source: str) -> None:
        """A live symlink named `target` pointing at `source`."""
        self._new(target, stat.S_IFLNK | 0o777, target=source)

    def readlink(self, path: str) -> str:
        """A symlink's target."""
        return self._lookup(path).target

    def chmod(self, path: str | None, mode: int) -> None:
        """Change the live mode (durable with the next fsync of the file, or when its folder first is)."""
        node = self._lookup(path) if path is not None else None
        if node is not None:
            node.mode = stat.S_IFMT(node.mode) | (mode & 0o7777)

    def chown(self, path: str | None, uid: int, gid: int) -> None:
        """Ownership is not modelled: always the mounting user's."""

    def utimens(self, path: str | None, times: Any = None) -> None:
        """Timestamps are not modelled."""

    def statfs(self, path: str) -> dict[str, int]:
        """The backing file system's figures (the daemon checks free space)."""
        figures = os.statvfs(self.backing)
        names = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_namemax")
        return {name: int(getattr(figures, name)) for name in names}


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching [start, end) ranges joined, in order."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        elif end > start:
            merged.append((start, end))
    return merged


def serve(backing: Path, mountpoint: Path) -> None:
    """Serve the file system until it is unmounted (or the process killed: a power cut)."""
    FUSE(
        LossyFS(backing),
        str(mountpoint),
        foreground=True,
        nothreads=True,
        use_ino=True,
        hard_remove=True,  # an unlinked open file really loses its name (no .fuse_hidden files in the library)
        big_writes=True,
        fsname="lossyfs",
        subtype="lossyfs",
    )


class LossyMount:
    """A `LossyFS` served by its own process on `mountpoint`, its durable state in `backing`."""

    def __init__(self, backing: Path, mountpoint: Path, log: Path) -> None:
        self.backing = backing
        self.mountpoint = mountpoint
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.cuts = 0

    def mount(self, within: float = 15.0) -> None:
        """Start the file system from what is durable and wait (bounded) until the mount is there."""
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.reliability.lossyfs", str(self.backing), str(self.mountpoint)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=Path(__file__).resolve().parents[2],
            )
        deadline = time.monotonic() + within
        while not os.path.ismount(self.mountpoint):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._stop()
                raise RuntimeError(f"lossyfs did not mount {self.mountpoint}: {self.log.read_text(errors='replace')}")
            time.sleep(0.02)

    def power_cut(self) -> None:
        """Lose everything not synced: SIGKILL the file system's process, then detach the dead mount."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
            self.process = None
        self.cuts += 1
        self._detach()

    def unmount(self) -> None:
        """Unmount (a clean one: the process ends by itself) and stop the process."""
        self._detach()
        self._stop()

    def _detach(self) -> None:
        if os.path.ismount(self.mountpoint) or _dead_mount(self.mountpoint):
            # Lazy: the kernel lets go as soon as nobody uses the mount (a killed daemon may still be closing).
            subprocess.run(["umount", "-l", str(self.mountpoint)], check=False, capture_output=True, timeout=30)

    def _stop(self) -> None:
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None


def _dead_mount(path: Path) -> bool:
    """Whether `path` is a FUSE mount whose process died (stat says: transport endpoint is not connected)."""
    try:
        path.stat()
    except OSError as err:
        return err.errno == errno.ENOTCONN
    return False


def fuse_available() -> str | None:
    """Why a FUSE mount cannot be made here (None when it can)."""
    if not Path("/dev/fuse").exists():
        return "/dev/fuse is missing (no FUSE in this kernel or container)"
    return None


if __name__ == "__main__":
    # The power cut is this process's SIGKILL; an unmount ends it in order.
    serve(Path(sys.argv[1]), Path(sys.argv[2]))
