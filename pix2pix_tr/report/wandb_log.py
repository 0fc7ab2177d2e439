"""Optional Weights & Biases logging of a training run (and of test.py's results) (``train.py --use_wandb [--wandb_project_name P]``), the
official pix2pix's flags with its meaning: the losses of every loss-log row (``G_GAN``, ``G_L1``, ``D_real``,
``D_fake``; ``D_gp`` with wgangp) and both learning rates (``lr_G``, ``lr_D``), stepped by the total iteration
count, and the gallery images of each gallery row (``real_A``, ``fake_B``, ``real_B``, with ``epoch``).

The W&B run is named after ``--name`` and carries every option as its config; its id is kept in
``checkpoints/NAME/wandb_run_id`` so that ``--continue_train`` continues the same W&B run. W&B's own settings
apply (``WANDB_MODE=offline`` logs to local files for a later ``wandb sync``; ``WANDB_DIR`` says where). Needs the
``wandb`` package: ``pip install 'pix2pix-tr[wandb]'``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Mapping

import torch


INSTALL_HINT = "pip install 'pix2pix-tr[wandb]'"
RUN_ID_FILE = "wandb_run_id"


def wandb_problem() -> str | None:
    """Why ``--use_wandb`` cannot work here (one sentence), or None."""
    if importlib.util.find_spec("wandb") is None:
        return f"--use_wandb needs the wandb package, which is not installed: {INSTALL_HINT}"
    return None


class WandbLog:
    """A W&B run fed by the loop's observers (log rows, gallery rows)."""

    def __init__(self, run_dir: str | Path, *, project: str, name: str, config: Mapping[str, Any],
                 resume: bool, error: type[Exception] = RuntimeError) -> None:
        import wandb

        self._wandb = wandb
        id_file = Path(run_dir) / RUN_ID_FILE
        run_id = id_file.read_text().strip() if resume and id_file.is_file() else None
        try:
            self.run = wandb.init(project=project, name=name, config=dict(config), id=run_id,
                                  resume="allow" if run_id else None)
        except Exception as exc:  # not logged in, no network, a bad project name: W&B's own words
            raise error(f"--use_wandb: Weights & Biases could not start a run ({type(exc).__name__}: {exc}); "
                                f"log in with `wandb login`, or set WANDB_MODE=offline to log locally and `wandb sync` "
                                f"later") from exc
        from ..io import atomic_write_text

        atomic_write_text(id_file, f"{self.run.id}\n")

    def add_row(self, row: Mapping[str, Any]) -> None:
        """One loss-log row: the losses and the learning rates at its ``total_iters``."""
        values = {key: float(value) for key, value in row.items()
                  if key not in ("epoch", "epoch_iter", "total_iters", "time") and isinstance(value, (int, float))}
        self.run.log({**values, "epoch": int(row["epoch"])}, step=int(row["total_iters"]))

    def add_visuals(self, epoch: int, step: int, visuals: Mapping[str, torch.Tensor]) -> None:
        """A gallery row: each (N, C, H, W) image in [-1, 1] (the first of the batch) as a W&B image."""
        images = {}
        for name, batch in visuals.items():
            picture = ((batch[0].detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            if picture.shape[0] == 1:
                picture = picture.expand(3, -1, -1)
            images[name] = self._wandb.Image(picture[:3].permute(1, 2, 0).numpy(), caption=f"epoch {epoch}")
        self.run.log({**images, "epoch": int(epoch)}, step=int(step))

    def close(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


def log_test_results(image_dir: str | Path, stems, visuals, *, project: str, name: str, config: Mapping[str, Any],
                     error: type[Exception] = RuntimeError) -> None:
    """``test.py --use_wandb``: the result images of a finished test.py run as one W&B table (``results``: a row per
    input, a column per visual), as the official test.py logs them. ``error`` (one sentence) when W&B cannot
    start; the results folder is complete either way."""
    problem = wandb_problem()
    if problem:
        raise error(problem)
    import wandb

    from ..report.gallery import image_file_name

    try:
        run = wandb.init(project=project, name=name, config=dict(config), job_type="test")
    except Exception as exc:
        raise error(f"--use_wandb: Weights & Biases could not start a run ({type(exc).__name__}: {exc}); the "
                            f"results are written; log in with `wandb login`, or set WANDB_MODE=offline") from exc
    table = wandb.Table(columns=["id", *visuals])
    for stem in stems:
        table.add_data(stem, *(wandb.Image(str(Path(image_dir) / image_file_name(stem, v))) for v in visuals))
    run.log({"results": table})
    run.finish()
