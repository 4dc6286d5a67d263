"""Atomic writes and the one rule for an existing output.

Every file or folder that dlpipe hands to a later stage is written under a temporary
sibling name and renamed into place when complete (one ``os.replace``).

The rule for an output that exists (:func:`check_output`), used by every subcommand and
every output option: it is refused unless ``--overwrite`` is given, except an incomplete
output a failed or killed dlpipe run left behind (:func:`is_leftover`), which the next run
replaces (or resumes). A temporary sibling carries the host and process id of its writer
(``.NAME.<host>-<pid>.<random>.tmp``); one whose process is gone is removed by the next
write of the same output.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.errors import UserError
from dlpipe.stores import marker

__all__ = [
    "OUTPUT_ERRNOS",
    "atomic_path",
    "check_output",
    "check_outputs",
    "is_leftover",
    "json_safe",
    "output_error",
    "output_errors",
    "remove_stale_temporaries",
    "staged_dir",
    "write_json_atomic",
    "write_text_atomic",
]

log = logging.getLogger("dlpipe")

OUTPUT_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EFBIG: "file too large for the file system (or the size limit)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
"""Write failures that are the user's to fix (disk full, read-only, no permission)."""

_CARD = "card.json"  # a model folder is complete once its card is written (stores.card)


def is_leftover(path: str | Path) -> bool:
    """Whether ``path`` is an incomplete output a failed or killed dlpipe run left.

    That is a folder without its completion marker (nor a model card) which dlpipe
    started: a Zarr group with ``dlpipe`` root attributes (``dlpipe tile``,
    ``dlpipe predict``), a model folder with ``checkpoints/`` (``dlpipe train``), or a
    folder holding no file at all (only empty folders). Anything else, such as a user's
    own Zarr or TIFF, is not.

    Parameters
    ----------
    path : path

    Returns
    -------
    bool
    """
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        return False
    if marker.is_complete(path) or (path / _CARD).is_file():
        return False
    if (path / "checkpoints").is_dir():
        return True
    meta = path / "zarr.json"
    if meta.is_file():
        try:
            attrs = json.loads(meta.read_text()).get("attributes", {})
        except (OSError, ValueError, AttributeError):
            attrs = {}
        if isinstance(attrs, dict) and isinstance(attrs.get("dlpipe"), dict):
            return True
    return not any(p.is_file() or p.is_symlink() for p in path.rglob("*"))


def _same_or_inside(a: Path, b: Path) -> bool:
    try:
        ra, rb = a.resolve(), b.resolve()
    except OSError:
        return False
    return ra == rb or rb in ra.parents


def check_output(
    path: str | Path,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path | None] = (),
) -> bool:
    """The one rule for an output: may ``path`` be written?

    Parameters
    ----------
    path : path
        The output (file or folder).
    overwrite : bool
        ``--overwrite`` was given: an existing output may be replaced.
    inputs : paths
        The command's inputs: an output that is one of them (or inside one) is refused
        even with ``overwrite``.

    Returns
    -------
    bool
        True when ``path`` exists and is to be replaced (``overwrite``, or an incomplete
        leftover of a failed run, see :func:`is_leftover`); False when it does not exist.

    Raises
    ------
    UserError
        ``path`` is an input, or it exists, is not a leftover and ``overwrite`` is false.
    """
    path = Path(path)
    for src in inputs:
        if src is not None and _same_or_inside(path, Path(src)):
            raise UserError("the output is also an input of this command", path=path)
    if not (path.exists() or path.is_symlink()):
        return False
    if overwrite:
        return True
    if is_leftover(path):
        log.info("%s: replacing the incomplete output of a failed or killed run", path)
        return True
    raise UserError("output exists (use --overwrite to replace it)", path=path)


def check_outputs(
    paths: Iterable[str | Path | None],
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path | None] = (),
) -> None:
    """:func:`check_output` for each of ``paths`` (None entries skipped), before any work."""
    inputs = list(inputs)
    for path in paths:
        if path is not None:
            check_output(path, overwrite=overwrite, inputs=inputs)


def output_error(
    exc: OSError, path: str | Path | None = None, *, action: str = "cannot write"
) -> UserError | None:
    """The :class:`UserError` for a failure the user must fix (disk full, ...), or None.

    Parameters
    ----------
    exc : OSError
        The failure (``ENOSPC``, ``EFBIG``, ``EDQUOT``, ``EROFS``, ``EACCES``, ``EPERM``).
    path : path, optional
        The output being written (default the file named by ``exc``).
    action : str
        What failed, before the reason (the CLI's last resort passes ``""``: it cannot
        tell a read from a write).
    """
    why = OUTPUT_ERRNOS.get(exc.errno or -1)
    if why is None:
        return None
    where = path if path is not None else exc.filename
    return UserError(f"{action}: {why}" if action else why, path=where)


@contextlib.contextmanager
def output_errors(path: str | Path) -> Iterator[None]:
    """Raise a write failure of the block that the user must fix as a :class:`UserError`.

    A full, read-only or forbidden location (:data:`OUTPUT_ERRNOS`) while writing the
    output ``path`` becomes one line naming ``path``. Failures naming a file outside
    ``path``'s folder (an input) pass through unchanged. Used by :func:`atomic_path` and
    by the writers that fill their store in place (``dlpipe tile``, ``dlpipe predict``).
    """
    path = Path(path)
    try:
        yield
    except OSError as exc:
        mine = exc.filename is None or str(exc.filename).startswith(str(path.parent))
        err = output_error(exc, path) if mine else None
        if err is None:
            raise
        raise err from exc


_HOST = socket.gethostname().replace(".", "_").replace("-", "_") or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(final: str | Path) -> list[Path]:
    """Remove the temporaries of ``final`` left by dead processes of this host.

    A temporary is named ``.NAME.<host>-<pid>.<random>.tmp`` (:func:`atomic_path`); it is
    removed only when ``<host>`` is this host and no process ``<pid>`` runs. Returns the
    paths removed.
    """
    final = Path(final)
    if not final.parent.is_dir():
        return []
    removed = []
    prefix = f".{final.name}.{_HOST}-"
    for sib in final.parent.iterdir():
        name = sib.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid_text = name[len(prefix) :].split(".", 1)[0]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)) or int(pid_text) == os.getpid():
            continue
        with contextlib.suppress(FileNotFoundError):
            _remove(sib)
            removed.append(sib)
            log.info("removed %s, left by a killed run", sib)
    return removed


@contextlib.contextmanager
def atomic_path(
    final: str | Path,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path | None] = (),
) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it to ``final`` only if the block succeeds.

    Works for files and directories. The temporary path lives in the same folder so
    the rename is atomic on POSIX file systems. On error the temporary path is removed
    and ``final`` is left as it was. ``final`` is checked by :func:`check_output` first,
    and temporaries of ``final`` left by killed runs are removed
    (:func:`remove_stale_temporaries`). A full, read-only or forbidden output location
    raises a :class:`UserError` naming ``final`` (:func:`output_error`).
    """
    final = Path(final)
    check_output(final, overwrite=overwrite, inputs=inputs)
    tmp: Path | None = None
    try:
        with output_errors(final):
            final.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(final)
            tmp = Path(
                tempfile.mkdtemp(
                    prefix=f".{final.name}.{_HOST}-{os.getpid()}.",
                    suffix=".tmp",
                    dir=final.parent,
                )
            )
            tmp.rmdir()  # the caller decides whether it becomes a file or a directory
            yield tmp
            if final.exists() or final.is_symlink():
                _remove(final)
            os.replace(tmp, final)
    finally:
        if tmp is not None and (tmp.exists() or tmp.is_symlink()):
            _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def write_text_atomic(path: str | Path, text: str, *, overwrite: bool = False) -> None:
    """Write ``text`` to ``path`` via a temporary file and rename.

    ``overwrite``: replace an existing ``path`` (see :func:`check_output`); a writer
    rewriting a file inside its own store passes True.
    """
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text)


def json_safe(obj: Any) -> Any:
    """``obj`` as strict JSON: NaN and infinite floats become None, NumPy scalars Python ones."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_json_atomic(path: str | Path, obj: Any, *, overwrite: bool = False) -> None:
    """Write ``obj`` as indented strict JSON (see :func:`json_safe`), atomically.

    ``overwrite`` as in :func:`write_text_atomic`.
    """
    write_text_atomic(path, json.dumps(json_safe(obj), indent=2) + "\n", overwrite=overwrite)


@contextlib.contextmanager
def staged_dir(final: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder; on success move each of its entries into ``final``.

    Every entry appears under ``final`` only when complete (one rename each); other
    entries already in ``final`` are left alone. Without ``overwrite`` an entry that
    already exists in ``final`` is an error raised before anything is moved.
    A staging folder left by a killed run is removed first.
    """
    final = Path(final)
    stage = final.parent / f".{final.name}.partial"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    try:
        yield stage
        final.mkdir(parents=True, exist_ok=True)
        entries = sorted(stage.iterdir())
        clashes = [final / e.name for e in entries if (final / e.name).exists()]
        if clashes and not overwrite:
            raise UserError("output exists (use --overwrite to replace it)", path=clashes[0])
        for entry in entries:
            target = final / entry.name
            if target.exists():
                _remove(target)
            os.replace(entry, target)
    finally:
        if stage.exists():
            shutil.rmtree(stage)
