"""What a data tool wrote into its output folder, so that a rerun continues exactly, replaces cleanly, or refuses.

``make_synthetic_cityscapes``, ``prepare_cityscapes`` and ``combine_A_and_B`` each keep a manifest,
``OUTPUT/pix2pix_tr_manifest.json``, with one entry per *part* of the folder (a split: ``train``, ``val``, ...):
the settings that made it, the files it holds, the command that makes it, and whether it is complete. The
entry is written *before* the first file, marked incomplete, and marked complete after the last one, so a
part whose writer was interrupted says so. On a rerun into the same folder (:func:`claim`):

* the same settings continue: an interrupted part is finished (each tool's docstring says whether files already
  there are kept or written again; either way the part ends as one uninterrupted run leaves it), and files the
  manifest listed that the part no longer has (its input lost frames) are removed;
* other settings, or image files that no recorded run wrote, are refused in one sentence naming what differs,
  unless ``overwrite``: then the part's old images (those the manifest lists and any other image in its folders)
  are removed first, so the folder holds exactly the new part;
* parts not being written are left as they are.

Readers call :func:`check_complete`: a part marked incomplete is refused with the command that finishes it
(``AlignedDataset`` for A|B splits, ``prepare_cityscapes`` for the synthetic city it reads). A folder without a
manifest (made by hand or by an older release) is read as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from pix2pix_tr.data.errors import DatasetError
from pix2pix_tr.data.image_folder import is_image_file
from pix2pix_tr.io import TMP_GLOB, atomic_write_text

MANIFEST_NAME = "pix2pix_tr_manifest.json"
_SHOW = 3


@dataclass
class Part:
    """One part of an output folder: ``folders`` (relative to the folder) hold its images, ``files`` (relative
    paths) are every file it will hold, ``settings`` what makes it (JSON values; compared on a rerun)."""

    name: str
    settings: dict[str, Any]
    files: list[str]
    folders: list[str]
    command: str = ""
    flags: dict[str, str] = field(default_factory=dict)  # setting -> the flag that sets it, for messages


def manifest_path(root: str | os.PathLike) -> Path:
    return Path(root) / MANIFEST_NAME


def read_manifest(root: str | os.PathLike) -> dict | None:
    """The manifest of ``root``, or None when there is none. A damaged one raises :class:`DatasetError`."""
    path = manifest_path(root)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("parts"), dict):
            raise ValueError("no parts")
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} is damaged ({exc}): remove it, and rerun the command that wrote the folder with "
                           "--overwrite") from None
    return data


def command_line(script: str, args: Iterable[str]) -> str:
    """``python SCRIPT ARGS`` quoted for a shell: the command a message tells the user to run."""
    return " ".join(["python", script, *(shlex.quote(str(a)) for a in args)])


def _images_under(root: Path, folders: Iterable[str]) -> set[str]:
    found = set()
    for folder in folders:
        base = root / folder
        if not base.is_dir():
            continue
        recursive = folder not in ("", ".")
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
            for name in filenames:
                if not name.startswith(".") and is_image_file(name):
                    found.add((Path(dirpath) / name).relative_to(root).as_posix())
    return found


def _listing(names: Iterable[str]) -> str:
    names = sorted(names)
    return ", ".join(names[:_SHOW]) + (f" and {len(names) - _SHOW} more" if len(names) > _SHOW else "")


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


def _difference(old: dict, new: dict, flags: dict[str, str]) -> str:
    keys = [k for k in new if old.get(k) != new[k]] + [k for k in old if k not in new]
    return ", ".join(f"{flags.get(k, k)} {_show(old.get(k))} (now {_show(new.get(k))})" for k in keys)


def claim(root: str | os.PathLike, tool: str, parts: list[Part], *, overwrite: bool, flag: str,
          check_only: bool = False) -> None:
    """Make ``root`` ready for ``parts``: check each against what the folder holds (see the module docstring),
    remove what ``overwrite`` replaces, and record the parts as incomplete. Raises :class:`DatasetError` (one
    sentence naming ``flag``, the folder and what differs) when a part would mix with or silently replace
    files and ``overwrite`` is False. Nothing is written or removed before every part has been checked, and
    nothing at all with ``check_only`` (a tool that prepares its files elsewhere first checks early)."""
    root = Path(root)
    manifest = read_manifest(root) or {"parts": {}}
    to_clear: list[tuple[Part, set[str]]] = []
    for part in parts:
        part.settings = json.loads(json.dumps(part.settings))  # compared with what a JSON file gives back
        old = manifest["parts"].get(part.name)
        present = _images_under(root, part.folders)
        where = root / part.folders[0] if len(part.folders) == 1 and part.folders[0] not in ("", ".") else root
        if old is not None and old.get("tool") == tool and old.get("settings") == part.settings:
            stray = present - set(old.get("files", [])) - set(part.files)
            problem = (f"{flag} {where} holds {len(stray)} image(s) that no recorded run of {tool} wrote "
                       f"({_listing(stray)}), which would be read with the {part.name} files") if stray else None
            if problem is None:  # same settings: files of the old listing that the part no longer has go
                to_clear.append((part, set(old.get("files", [])) - set(part.files)))
        elif old is not None:
            if old.get("tool") != tool:
                problem = f"{flag} {root} holds the {part.name} part written by {old.get('tool')}, not by {tool}"
            else:
                problem = (f"{flag} {where} holds the {part.name} part made with other settings "
                           f"({_difference(old.get('settings', {}), part.settings, part.flags)})")
        elif present:
            problem = (f"{flag} {where} already holds {len(present)} image(s) that no recorded run of {tool} wrote "
                       f"({_listing(present)}), which would be read with the new {part.name} files")
        else:
            problem = None
        if problem is not None:
            if not overwrite:
                raise DatasetError(f"{problem}: pass --overwrite to replace what is there (its old images are "
                                   f"removed first), or choose another {flag}")
            old_files = set(old.get("files", [])) if old is not None else set()
            to_clear.append((part, present | old_files))
    if check_only:
        return
    for part, names in to_clear:
        for name in sorted(names):
            with contextlib.suppress(FileNotFoundError):
                (root / name).unlink()
    for part in parts:  # the leftovers of a writer that was killed mid-file
        for folder in part.folders:
            base = root / folder
            if base.is_dir():
                for tmp in base.rglob(TMP_GLOB):
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
        manifest["parts"][part.name] = dict(tool=tool, settings=part.settings, command=part.command,
                                            complete=False, folders=part.folders, files=sorted(part.files))
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(manifest_path(root), json.dumps(manifest, indent=1) + "\n")


def mark_complete(root: str | os.PathLike, name: str) -> None:
    """Record that part ``name`` of ``root`` is complete: the last thing its writer does."""
    manifest = read_manifest(root)
    if manifest is None or name not in manifest["parts"]:
        raise DatasetError(f"{manifest_path(root)} lost the record of the {name} part while it was written (another "
                           "process writing into the same folder?): rerun the command")
    manifest["parts"][name]["complete"] = True
    atomic_write_text(manifest_path(root), json.dumps(manifest, indent=1) + "\n")


def check_complete(root: str | os.PathLike, name: str, *, what: str) -> None:
    """Refuse part ``name`` of ``root`` when its manifest marks it incomplete (its writer was interrupted or is
    still running); warn on stderr when its folder holds images the manifest does not list, or misses some it
    lists. Silent for a folder without a manifest or a part it does not record."""
    manifest = read_manifest(root)
    part = None if manifest is None else manifest["parts"].get(name)
    if part is None:
        return
    if not part.get("complete", False):
        command = part.get("command") or f"the {part.get('tool', 'data tool')} command that made it"
        raise DatasetError(f"the {what} {Path(root) / name} is incomplete: {part.get('tool')} stopped before "
                           f"writing all {len(part.get('files', []))} files (or is still running); finish it by "
                           f"running the same command again: {command}")
    listed = set(part.get("files", []))
    folders = part.get("folders") or [name]
    present = _images_under(Path(root), folders)
    listed_images = {f for f in listed if is_image_file(f) and any(
        f == d or f.startswith(d.rstrip("/") + "/") for d in folders)}
    extra, missing = present - listed, listed_images - present
    if extra or missing:
        bits = []
        if extra:
            bits.append(f"holds {len(extra)} image(s) its manifest does not list ({_listing(extra)}), which are read "
                        "too")
        if missing:
            bits.append(f"lacks {len(missing)} image(s) its manifest lists ({_listing(missing)})")
        print(f"warning: the {what} {Path(root) / name} {' and '.join(bits)}: {part.get('tool')} did not leave it "
              f"so (see {manifest_path(root)})", file=sys.stderr)
