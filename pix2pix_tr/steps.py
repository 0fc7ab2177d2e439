"""A pipeline of the project's own commands whose rerun continues exactly, redoes cleanly, or refuses.

``demo.py`` and ``experiments/gan_compare.py`` run a sequence of ordinary commands (make the city, prepare the
pairs, train, test, score, ...) and skip on a rerun what is already done. "Done" is decided from a record, not
from the presence of a file: each step keeps ``WORK/.steps/{key}.json`` with the exact command it ran, the
records of the steps whose outputs it read, and whether it finished (the record says "started" before the
command runs and "done" only after it exited 0). On a rerun, step by step:

* the same command over the same inputs, finished: skipped;
* the same command, interrupted: continued where the command can continue (``Step.resume``: the state file it
  leaves and the flag that continues it, e.g. ``train.py --continue_train``), otherwise its partial outputs are
  removed and it starts over;
* its inputs were redone in this run (an earlier step ran again): its outputs are removed and it runs again,
  so nothing is built on stale inputs;
* another command (new settings), or outputs that no record explains: refused, in one sentence naming the step
  and what differs, unless ``force``; with ``force`` its outputs are removed first and it runs again, so the
  command never meets the previous run's files (the advice "pass --force" works as written). ``force`` changes
  nothing else: steps finished with the same command are still kept (delete the work folder to redo all).

Every decision is made before the first command runs (:func:`plan`), so a refusal leaves everything as it was.
A step's outputs must lie inside the work folder; nothing outside it is ever removed.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from pix2pix_tr.io import atomic_write_text

RECORDS = ".steps"


class StepRefused(ValueError):
    """A rerun would mix new settings with the results of old ones; the message says which step and what to do."""


class StepFailed(RuntimeError):
    """A command exited with a non-zero status; its own message is above in the output."""

    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message)
        self.returncode = returncode


@dataclass
class Step:
    """One command. ``outputs``: the files and folders it writes (removed before it is redone; the first is its
    product: a finished step whose product is gone runs again). ``after``: keys
    of the steps whose outputs it reads. ``resume``: ``(state file, flag)``, how an interrupted run of the same
    command continues. ``always``: run it every time (a cheap report over the other steps' outputs)."""

    key: str
    title: str
    command: list[str]
    outputs: list[Path]
    after: list[str] = field(default_factory=list)
    resume: tuple[Path, str] | None = None
    always: bool = False


def shown(command: Sequence[str], work: Path | None = None) -> str:
    """The command as a user would type it: ``python`` for this interpreter, an installed command by its name,
    and (with ``work``) the work folder as ``$OUT``, so that a record names no folder of one machine."""
    text = " ".join(shlex.quote(str(c)) for c in command).replace(shlex.quote(sys.executable), "python", 1)
    if command and Path(str(command[0])).parent == Path(sys.executable).parent:
        text = text.replace(shlex.quote(str(command[0])), Path(str(command[0])).name, 1)
    if work is not None:
        text = text.replace(str(work), "$OUT")
    return text


def _identity(step: Step, work: Path) -> str:
    return shown(step.command, work)


def _record_path(work: Path, key: str) -> Path:
    return work / RECORDS / f"{key}.json"


def _read_record(work: Path, key: str) -> dict | None:
    try:
        record = json.loads(_record_path(work, key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _write_record(work: Path, key: str, record: dict) -> None:
    atomic_write_text(_record_path(work, key), json.dumps(record, indent=1) + "\n")


def _difference(old: str, new: str) -> str:
    """The flags whose values differ between two recorded commands, as ``--flag old -> new``."""
    def flags(text: str) -> dict[str, str]:
        words, out, i = shlex.split(text), {}, 0
        while i < len(words):
            if words[i].startswith("--"):
                j = i + 1
                while j < len(words) and not words[j].startswith("--"):
                    j += 1
                out[words[i]] = " ".join(words[i + 1:j])
                i = j
            else:
                out.setdefault("", words[i])
                i += 1
        return out

    a, b = flags(old), flags(new)
    changes = [f"{k} {a.get(k, '(absent)') or '(set)'} -> {b.get(k, '(absent)') or '(set)'}".strip()
               for k in dict.fromkeys([*a, *b]) if k and a.get(k) != b.get(k)]
    return ", ".join(changes[:4]) + (f" and {len(changes) - 4} more" if len(changes) > 4 else "") or "the command"


@dataclass
class Decision:
    step: Step
    action: str  # "skip", "resume", "run" (fresh or redo), "always"
    why: str = ""


def plan(steps: Sequence[Step], work: Path, *, force: bool = False, flag: str = "--force",
         out_flag: str = "--out") -> list[Decision]:
    """Decide every step before anything runs; raises :class:`StepRefused` for the first step a rerun may not
    touch (see the module docstring)."""
    work = Path(work).resolve()
    for step in steps:
        for path in step.outputs:
            if not Path(path).resolve().is_relative_to(work):
                raise ValueError(f"step {step.key}: its output {path} lies outside the work folder {work}")
    decisions: list[Decision] = []
    redone: set[str] = set()
    refusals: list[str] = []
    for step in steps:
        if step.always:
            decisions.append(Decision(step, "always"))
            continue
        record = _read_record(work, step.key)
        identity = _identity(step, work)
        inputs_redone = [k for k in step.after if k in redone]
        recorded_inputs = {k: (_read_record(work, k) or {}).get("id") for k in step.after}
        outputs_exist = any(Path(p).exists() for p in step.outputs)
        same_command = record is not None and record.get("command") == identity
        same_inputs = record is not None and record.get("inputs") == recorded_inputs
        problem = None
        if record is None:
            if outputs_exist:
                existing = next(Path(p) for p in step.outputs if Path(p).exists())
                problem = f"{step.title}: {existing} holds output that no recorded run of this command made"
        elif not same_command:
            problem = (f"{step.title} was run with other settings "
                       f"({_difference(record.get('command', ''), identity)})")
        if problem is not None:
            if not force:
                refusals.append(problem)
            action, why = "run", f"{flag}: redone with the new settings" if record is not None else f"{flag}"
        elif record is None:
            action, why = "run", ""
        elif inputs_redone or not same_inputs:
            action, why = "run", "its inputs were made again"
        elif record.get("status") == "done" and Path(step.outputs[0]).exists():
            action, why = "skip", "finished in an earlier run with the same command"
        elif record.get("status") != "done" and step.resume is not None and Path(step.resume[0]).exists():
            action, why = "resume", "interrupted earlier: continuing it"
        else:
            action, why = "run", "interrupted earlier: starting it over"
        if action != "skip":
            redone.add(step.key)
        decisions.append(Decision(step, action, why))
    if refusals:
        more = f" (and {len(refusals) - 1} more step(s))" if len(refusals) > 1 else ""
        raise StepRefused(f"{refusals[0]}{more}, in {work}: pass {flag} to redo such steps (their old outputs are "
                          f"removed first), or choose another {out_flag}")
    return decisions


def execute(decisions: Sequence[Decision], work: Path, *, dry_run: bool = False, log: list | None = None,
            on_log: Callable[[list], None] | None = None, cwd: Path | None = None,
            program: str = "the command") -> list[dict]:
    """Run what :func:`plan` decided, streaming each command's output; returns the log (``log`` extended with
    one ``{"step", "command", "seconds", "returncode"}`` per command run). A failing command raises
    :class:`StepFailed`; its record stays "started", so the same command continues or starts it over."""
    work = Path(work).resolve()
    log = [] if log is None else log
    for d in decisions:
        step = d.step
        if d.action == "skip":
            print(f"\n(skipping {step.title}: {d.why})", flush=True)
            continue
        command = list(step.command)
        if d.action == "resume":
            command.append(step.resume[1])
        note = f"   # {d.why}" if d.why else ""
        print(f"\n[{step.title}] $ {shown(command)}{note}", flush=True)
        if dry_run:
            continue
        if d.action == "run":
            for path in step.outputs:
                path = Path(path)
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.exists() or path.is_symlink():
                    path.unlink()
        if not step.always:
            _write_record(work, step.key, dict(command=_identity(step, work), status="started", id=uuid.uuid4().hex,
                                               inputs={k: (_read_record(work, k) or {}).get("id") for k in step.after}))
        start = time.perf_counter()
        result = subprocess.run(command, cwd=cwd)
        log.append(dict(step=step.title, command=shown(command, work), seconds=round(time.perf_counter() - start, 1),
                        returncode=result.returncode))
        if on_log is not None:
            on_log(log)
        if result.returncode != 0:
            raise StepFailed(f"step '{step.title}' failed with exit status {result.returncode} (its message is above); "
                             f"fix what it says and run {program} again: finished steps are kept, this one continues "
                             f"or starts over", result.returncode)
        if not step.always:
            record = _read_record(work, step.key) or {}
            _write_record(work, step.key, dict(record, status="done"))
    return log
