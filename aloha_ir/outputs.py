"""Writing outputs so that a failure or an interruption never leaves them half-made.

Files: `write_bytes`/`write_text` (and `atomic_path` for writers that want a path of their own)
write a unique hidden temporary beside the target and rename it over the target; whatever stops
the write (a full disk, Ctrl-C, an exception) removes the temporary. The target is the old file or
the new one, never a mixture. (No fsync: this guards against a process dying, not a power cut.)

Folders: a command that writes `-o OUT` writes everything into a `Staged(OUT, command)` folder
(hidden: a sibling `.OUT.aloha-staging-PID-XXXXXXXX` while OUT does not exist, else inside OUT)
and the end of its `with` block swaps it in: a new OUT appears by one rename; into an existing OUT
every entry moves by one rename (folders such as code/ by an atomic exchange, renameat2, where the
file system has it), and the entries the same command wrote last time but not this time are
removed (OUT/.aloha-outputs.json records who wrote what), so OUT never mixes two runs -- new IR
with the old code/ and report. Files alohac did not write are never touched. Leaving the block by
an exception (Ctrl-C included) deletes the staging folder: OUT stays as it was. Ctrl-C during the
swap itself (a few renames) is held back until it is done.

Errors: an OSError while writing becomes an OutputError (exit 3) naming the final path, the reason
and what to do -- never an internal error.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import sys
import threading
import time

from aloha_ir.errors import InputFileError

MANIFEST = ".aloha-outputs.json"
MANIFEST_FORMAT = "aloha-outputs/1"
_STAGING = re.compile(r"\.aloha-staging-(\d+)-[0-9a-f]{8}$")
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


class OutputError(InputFileError):
    """An output that cannot be written: a full disk, a read-only or unwritable place, a path
    naming a file where a folder is needed (or the reverse)."""

    kind = "output error"
    os_error: OSError | None = None  # the system's error behind it


def output_error(e: OSError, path: str, kept: str | None = None) -> OutputError:
    """`e`, raised while writing `path`, as a user-facing error; `kept` names what is unchanged."""
    reason = (e.strerror or str(e)).lower() if e.errno != errno.EFBIG else \
        "file too large (the file system's or the process's file size limit)"
    if e.errno in _FULL:
        todo = "free some space, or write elsewhere"
    elif e.errno in _DENIED:
        todo = "give a writable place"
    elif e.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        todo = "a part of the path is a file where a folder is needed, or the reverse"
    else:
        todo = "give another output path"
    if kept:
        todo = f"{kept} is as it was; {todo}"
    error = OutputError(f"cannot write: {reason}", where=path, hint=todo)
    error.os_error = e
    return error


# -- files --------------------------------------------------------------------------------------

def _temporary(path: str) -> str:
    head, tail = os.path.split(os.path.abspath(path))
    return os.path.join(head, f".{tail}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def atomic_path(path: str, shown: str | None = None):
    """A temporary path to write `path` through: renamed over `path` when the block ends normally,
    deleted when it ends by an exception. `shown` is the path errors name (default `path`)."""
    shown = shown or path
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    except OSError as e:
        raise output_error(e, shown) from None
    tmp = _temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise output_error(e, shown) from None
        raise


def write_bytes(path: str, data: bytes, shown: str | None = None) -> str:
    """Write `data` to `path` through a temporary and a rename; returns `path`."""
    with atomic_path(path, shown) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
        with open(fd, "wb") as f:
            f.write(data)
    return path


def write_text(path: str, text: str, shown: str | None = None) -> str:
    """`write_bytes` of UTF-8 text."""
    return write_bytes(path, text.encode(), shown)


# -- folders ------------------------------------------------------------------------------------

def _missing_folders(folder: str, shown: str) -> list[str]:
    """The folders to create for `folder` to exist, innermost first; an OutputError when a part
    of it is a file."""
    missing = []
    while folder and not os.path.isdir(folder):
        if os.path.lexists(folder):
            raise OutputError(f"{folder} is a file, not a folder", where=shown,
                              hint="give another path for the output")
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing


def check_folder(path: str) -> None:
    """Fail now, before any work, if `path` cannot become an output folder: it is a file, a
    part of it is a file, or the nearest existing folder is not writable."""
    full = os.path.abspath(path)
    if os.path.lexists(full) and not os.path.isdir(full):
        raise OutputError("is a file, not a folder", where=path,
                          hint="give a folder for -o, or move the file away")
    _check_writable(full, path)


def check_file(path: str) -> None:
    """`check_folder` for an output file: it must not be a folder, its folder must be able to
    exist and be writable."""
    full = os.path.abspath(path)
    if os.path.isdir(full):
        raise OutputError("is a folder, not a file", where=path, hint="give a file name")
    _check_writable(os.path.dirname(full), path)


def _check_writable(folder: str, shown: str) -> None:
    """Make and remove a folder in the nearest existing one: permissions, a read-only file
    system or a pseudo-file system answer as they will at the end (os.access would not, for
    root)."""
    missing = _missing_folders(folder, shown)
    probe = os.path.join(os.path.dirname(missing[-1]) if missing else folder,
                         f".aloha-probe-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.mkdir(probe)
        os.rmdir(probe)
    except OSError as e:
        raise output_error(e, shown) from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exchange(a: str, b: str) -> bool:
    """Swap two existing paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the
    system or the file system cannot."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), b)


@contextlib.contextmanager
def _sigint_held():
    """Hold Ctrl-C back while the block runs (in the main thread), then deliver it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old if old is not None else signal.default_int_handler)
        if caught:
            if callable(old):
                old(signal.SIGINT, None)
            elif old == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)


class Staged:
    """The staging folder of one command's outputs for `dest` (see the module's docstring).

    `commit_on`: exceptions after which what was staged is still swapped in (`compare` keeps
    the generated program whose build failed, for inspection); never an OutputError.

    `own=False` is for outputs that are files in a folder the user owns (`train -o DIR/M.onnx`):
    they are swapped in the same way, but nothing is recorded or removed there.

        with Staged(args.output, "compile") as out:
            written.append(write_text(out.path("report.md"), text))
        print(*(out.final(w) for w in written))
    """

    def __init__(self, dest: str, command: str, *, own: bool = True, log=None,
                 commit_on: tuple[type[BaseException], ...] = ()):
        self.dest = dest
        self.command = command
        self.own = own
        self.commit_on = commit_on
        self.log = log if log is not None else sys.stderr
        self.root: str | None = None
        self.removed: list[str] = []
        self._created: list[str] = []  # parent folders this made, removed again on failure
        self._moving = False  # the swap has begun: OUT is no longer as it was

    # -- setting up ---------------------------------------------------------------------------

    def __enter__(self) -> Staged:
        check_folder(self.dest)
        dest = os.path.abspath(self.dest)
        tag = f"aloha-staging-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            if os.path.isdir(dest):
                self._clean_stale(dest, "")
                self.root = os.path.join(dest, f".{tag}")
            else:
                parent, name = os.path.split(dest)
                self._make_parents(parent)
                self._clean_stale(parent, f".{name}")
                self.root = os.path.join(parent, f".{name}.{tag}")
            os.mkdir(self.root)
        except OSError as e:
            self._undo_parents()
            raise output_error(e, self.dest) from None
        return self

    def _make_parents(self, parent: str) -> None:
        missing = _missing_folders(parent, self.dest)
        for d in reversed(missing):
            os.mkdir(d)
            self._created.append(d)

    def _undo_parents(self) -> None:
        for d in reversed(self._created):
            with contextlib.suppress(OSError):
                os.rmdir(d)

    @staticmethod
    def _clean_stale(folder: str, prefix: str) -> None:
        """Remove staging folders of runs that were killed (their process is gone)."""
        try:
            names = os.listdir(folder)
        except OSError:
            return
        for name in names:
            m = _STAGING.search(name)
            if m and name[:m.start()] == prefix and not _alive(int(m[1])):
                shutil.rmtree(os.path.join(folder, name), ignore_errors=True)

    # -- paths --------------------------------------------------------------------------------

    def path(self, *parts: str) -> str:
        """Where to write what will be OUT/parts."""
        return os.path.join(self.root, *parts)

    def place(self, path: str) -> str:
        """Where to write a user-given file: staged when it is directly in OUT, else itself (a
        folder of the user's inside OUT must not be swapped for one holding only this file)."""
        full = os.path.abspath(path)
        if os.path.dirname(full) == os.path.abspath(self.dest):
            return os.path.join(self.root, os.path.basename(full))
        return path

    def final(self, path: str) -> str:
        """The path a staged path will have once swapped in (others unchanged)."""
        if not self.root or not (path == self.root or path.startswith(self.root + os.sep)):
            return path
        rel = os.path.relpath(path, self.root)
        return self.dest if rel == "." else rel if self.dest in ("", ".") else \
            os.path.join(self.dest, rel)

    # -- finishing ----------------------------------------------------------------------------

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None or (isinstance(exc, self.commit_on) and
                                not isinstance(exc, OutputError)):
            self.commit()
            return False
        self.abort()
        error = exc.os_error if isinstance(exc, OutputError) else exc
        if isinstance(error, OSError) and (isinstance(exc, OutputError) or self._ours(error)):
            shown = exc.where if isinstance(exc, OutputError) and exc.where else \
                os.fsdecode(error.filename) if error.filename is not None else self.dest
            raise output_error(error, self.final(shown), kept=self._kept()) from None
        return False

    def _ours(self, e: OSError) -> bool:
        """Whether an OSError comes from writing the outputs (not from reading an input)."""
        name = os.fsdecode(e.filename) if e.filename is not None else ""
        return e.errno in _FULL or os.path.abspath(name).startswith(self.root + os.sep)

    def _kept(self) -> str:
        return self.dest if os.path.isdir(self.dest) else ""

    def abort(self) -> None:
        """Delete the staging folder (and the parent folders this made)."""
        if self.root and os.path.lexists(self.root):
            shutil.rmtree(self.root, ignore_errors=True)
        self._undo_parents()

    def commit(self) -> None:
        """Swap the staged outputs in (see the module's docstring)."""
        dest = os.path.abspath(self.dest)
        entries = sorted(os.listdir(self.root))
        self._moving = False
        try:
            with _sigint_held():
                if not os.path.isdir(dest):
                    if self.own:
                        self._write_manifest(self.root, {}, entries)
                    os.rename(self.root, dest)
                else:
                    self._merge(dest, entries)
        except OSError as e:
            self.abort()
            shown = self.final(os.fsdecode(e.filename)) if e.filename is not None else self.dest
            raise output_error(e, shown, kept=None if self._moving else self._kept()) from None
        self._created = []
        self.abort()  # the staging folder, left holding only what was replaced
        for r in self.removed:
            print(f"note: removed {r} (the previous {self.command}'s output, not rewritten by "
                  "this one)", file=self.log)

    def _merge(self, dest: str, entries: list[str]) -> None:
        """Move the staged entries into the existing `dest`: everything that writes (the
        manifest) is done first, then only renames."""
        trash = os.path.join(self.root, ".replaced")
        os.mkdir(trash)
        fd = os.open(dest, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # two commands finishing into one OUT take turns
            stale = []
            if self.own:
                old = self._read_manifest(dest)
                claimed = {e for c, v in old.items() if c != self.command for e in v["entries"]}
                stale = [n for n in old.get(self.command, {}).get("entries", [])
                         if n not in entries and n not in claimed and not n.startswith(".")
                         and os.sep not in n and os.path.lexists(os.path.join(dest, n))]
                self._write_manifest(self.root, old, entries)
            else:
                for name in entries:  # the user's folders stay theirs
                    target = os.path.join(dest, name)
                    if os.path.isdir(target) and not os.path.islink(target):
                        raise IsADirectoryError(errno.EISDIR, "is a folder",
                                                os.path.join(self.dest, name))
            self._moving = True
            for name in entries + ([MANIFEST] if self.own else []):
                new, target = os.path.join(self.root, name), os.path.join(dest, name)
                if os.path.isdir(new) and os.path.isdir(target) and \
                        not os.path.islink(target) and _exchange(new, target):
                    continue  # the old one is now in the staging folder, which goes
                if os.path.lexists(target) and (os.path.isdir(new) or (
                        os.path.isdir(target) and not os.path.islink(target))):
                    os.rename(target, os.path.join(trash, name))  # rename(2) will not
                os.replace(new, target)
            for name in stale:
                os.rename(os.path.join(dest, name), os.path.join(trash, name))
                self.removed.append(os.path.join(self.dest, name))
        finally:
            os.close(fd)

    @staticmethod
    def _read_manifest(dest: str) -> dict:
        """The commands' last entries recorded in dest ({} when absent or unreadable: then
        nothing is removed)."""
        try:
            with open(os.path.join(dest, MANIFEST), encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            return {}
        commands = data.get("commands") if isinstance(data, dict) and \
            data.get("format") == MANIFEST_FORMAT else None
        if not isinstance(commands, dict):
            return {}
        return {c: v for c, v in commands.items() if isinstance(v, dict) and
                isinstance(v.get("entries"), list) and
                all(isinstance(e, str) for e in v["entries"])}

    def _write_manifest(self, folder: str, old: dict, entries: list[str]) -> None:
        commands = {**old, self.command: {"entries": entries,
                                          "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}}
        write_text(os.path.join(folder, MANIFEST), json.dumps(
            {"format": MANIFEST_FORMAT, "commands": commands}, indent=1) + "\n")


def staged_file(path: str, command: str) -> Staged:
    """The Staged for an output file and its siblings in the user's folder (`train -o M.onnx`
    with M.curves.json, `opt -o M.mlir` with its weights): checked now, written whole."""
    check_file(path)
    return Staged(os.path.dirname(path) or ".", command, own=False)
