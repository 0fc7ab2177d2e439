"""The FCN-score's output folder: ``evaluation_results.json``, ``evaluation_results.txt`` (the original
evaluator's layout, then the run's provenance) and ``index.html`` with ``samples/`` (photo, the scorer's labels,
the ground truth), written from the results dict of :func:`evaluation.summary.summarize`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from PIL import Image

from evaluation.common import prepare_output_dir
from evaluation.labels import train_ids_to_color
from pix2pix_tr.io import atomic_save_image, atomic_write_text

RESULTS_JSON = "evaluation_results.json"
RESULTS_TXT = "evaluation_results.txt"
REPORT_HTML = "index.html"
SAMPLES_DIR = "samples"
_SAMPLE_NAME = re.compile(r".+_(photo|pred|gt)\.png")
#: pix2pix_tr.io's temporary names of the sample images: .{name}.XXXXXXXX.tmp
_TMP_NAME = re.compile(r"\..+_(photo|pred|gt)\.png\.[^.]+\.tmp")


def _fmt(x: float | None) -> str:
    return "nan" if x is None else f"{x:f}"


def results_text(results: dict) -> str:
    """The original evaluator's ``evaluation_results.txt`` layout, then the run's provenance."""
    s = results["scores"]
    lines = [f"Mean pixel accuracy: {_fmt(s['per_pixel_acc'])}",
             f"Mean class accuracy: {_fmt(s['per_class_acc'])}",
             f"Mean class IoU: {_fmt(s['class_iou'])}",
             "************ Per class numbers below ************"]
    for row in results["per_class"]:
        lines.append(f"{row['name']:<15}: acc = {_fmt(row['accuracy'])}, iou = {_fmt(row['iou'])}")
    b = results["majority_baseline"]
    lines += ["************ Run details ************",
              f"protocol: {results['protocol']} ({results['protocol_detail']})",
              f"absent classes: {results['convention']}",
              f"frames: {results['num_frames']} of {results['num_gt_frames']} in gtFine/{results['split']}"
              + (" (real photos)" if results["real"] else ""),
              "synthesized size: {}x{}".format(*results["synthesized_size"])
              + (" (--allow_any_size)" if results.get("allow_any_size") else ""),
              f"scorer: {results['scorer']['path']} ({results['scorer']['arch']}, "
              f"sha256 {results['scorer']['sha256']})",
              f"majority-class baseline ({b['class_name']} everywhere): pixel {_fmt(b['per_pixel_acc'])}, "
              f"class {_fmt(b['per_class_acc'])}, IoU {_fmt(b['class_iou'])}"]
    if results.get("miou") is not None:
        lines.append(f"mIoU (GAN Compression, x100): {results['miou']:.2f}")
    extra = results.get("extra_channel")
    if extra:
        lines.append(f"20th-channel pixels: {extra['pixels']}; frames the official arithmetic drops: "
                     f"{len(extra['official_dropped_frames'])}")
    if results["psnr_mean"] is not None:
        lines.append(f"PSNR vs real photo: {results['psnr_mean']:.3f} dB; SSIM: {results['ssim_mean']:.4f}")
    return "\n".join(lines) + "\n"


_CSS = """
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: middle; }
.bar { background: #eee; width: 240px; height: 12px; }
.bar div { height: 12px; }
.big td { font-size: 1.3em; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 4px; border: 1px solid #888; }
img { image-rendering: pixelated; }
.meta { color: #555; font-size: 0.9em; }
"""


def _bar(value: float | None, color: str):
    from dominate import tags

    outer = tags.div(cls="bar")
    if value is not None:
        outer.add(tags.div(style=f"width:{max(0.0, min(1.0, value)) * 100:.1f}%; background:{color}"))
    return outer


def remove_stale_samples(out: Path, written: set[str]) -> None:
    """Delete the sample images of an earlier report in ``out/samples/`` that this report did not write (only files
    named as :func:`write_reports` names them) and the temporary files of an earlier, killed report, so a rerun
    replaces the folder cleanly."""
    folder = out / SAMPLES_DIR
    for name in (RESULTS_JSON, RESULTS_TXT, REPORT_HTML):  # orphans of an earlier report's writes that were killed
        for path in out.glob(f".{name}.*.tmp"):
            path.unlink(missing_ok=True)
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        stale = _SAMPLE_NAME.fullmatch(path.name) and f"{SAMPLES_DIR}/{path.name}" not in written
        if path.is_file() and (stale or _TMP_NAME.fullmatch(path.name)):
            path.unlink(missing_ok=True)


def write_reports(results: dict, samples: list[dict], output_dir: str | Path) -> None:
    """Write ``evaluation_results.json``, ``evaluation_results.txt``, ``index.html`` and ``samples/`` (replacing an
    earlier report there: its sample images that this one does not show are removed)."""
    import dominate
    from dominate import tags

    from evaluation.labels import TRAIN_PALETTE

    out = prepare_output_dir(output_dir, flag="--output_dir")
    atomic_write_text(out / RESULTS_JSON, json.dumps(results, indent=1) + "\n")
    atomic_write_text(out / RESULTS_TXT, results_text(results))

    sample_rows = []
    for sample in samples:
        h, w = sample["gt"].shape[:2]  # all three shown at the comparison's aspect ratio
        scale = min(1.0, 512 / max(h, w))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        names = {}
        for key, arr in (("photo", sample["photo"]), ("pred", train_ids_to_color(sample["pred"])),
                         ("gt", train_ids_to_color(sample["gt"]))):
            img = Image.fromarray(arr)
            if img.size != size:
                img = img.resize(size, Image.BILINEAR if key == "photo" else Image.NEAREST)
            names[key] = f"{SAMPLES_DIR}/{sample['frame']}_{key}.png"
            atomic_save_image(img, out / names[key])
        sample_rows.append((sample["frame"], names))
    remove_stale_samples(out, {name for _, names in sample_rows for name in names.values()})

    s, b = results["scores"], results["majority_baseline"]
    doc = dominate.document(title=f"FCN-score: {results['label']}")
    with doc.head:
        tags.meta(charset="utf-8")
        tags.style(_CSS)
    with doc:
        tags.h1(f"FCN-score: {results['label']}")
        tags.p(f"{results['num_frames']} frames ({'real photos' if results['real'] else 'synthesized photos'}), "
               f"protocol {results['protocol']}: {results['protocol_detail']}. Classes absent from the ground "
               f"truth: {results['convention']} convention.", cls="meta")
        with tags.table(cls="big"):
            tags.tr(tags.th(""), tags.th("Per-pixel acc."), tags.th("Per-class acc."), tags.th("Class IOU"))
            tags.tr(tags.td(results["label"]), *[tags.td(fmt3(s[k])) for k in ("per_pixel_acc", "per_class_acc",
                                                                                   "class_iou")])
            tags.tr(tags.td(f"majority class ({b['class_name']} everywhere)"),
                    *[tags.td(fmt3(b[k])) for k in ("per_pixel_acc", "per_class_acc", "class_iou")])
        if results["psnr_mean"] is not None:
            tags.p(f"PSNR against the real photo: {results['psnr_mean']:.2f} dB, SSIM: {results['ssim_mean']:.3f} "
                   f"(mean over frames; real photo resized to the synthesized size).")
        tags.h2("Per class")
        with tags.table():
            tags.tr(tags.th("class"), tags.th("GT pixels"), tags.th("accuracy"), tags.th(""), tags.th("IoU"),
                    tags.th(""))
            for i, row in enumerate(results["per_class"]):
                color = "rgb({},{},{})".format(*TRAIN_PALETTE[i]) if i < len(TRAIN_PALETTE) else "#888"
                tags.tr(tags.td(tags.span(cls="swatch", style=f"background:{color}"), row["name"]),
                        tags.td(f"{row['gt_pixels']:,}"),
                        tags.td(fmt3(row["accuracy"]) if row["accuracy"] is not None else "absent"),
                        tags.td(_bar(row["accuracy"], "#4a7")),
                        tags.td(fmt3(row["iou"]) if row["iou"] is not None else "absent"),
                        tags.td(_bar(row["iou"], "#47a")))
        if sample_rows:
            tags.h2("Sample frames")
            frames = {f["frame"]: f for f in results["frames"]}
            with tags.table():
                tags.tr(tags.th("frame"), tags.th("photo"), tags.th("scorer's labels"), tags.th("ground truth"))
                for frame, names in sample_rows:
                    info = frames.get(frame, {})
                    caption = [frame, tags.br(), f"pixel acc {fmt3(info.get('pixel_acc'))}"]
                    if info.get("psnr") is not None:
                        caption += [tags.br(), f"PSNR {info['psnr']:.2f} dB", tags.br(), f"SSIM {info['ssim']:.3f}"]
                    tags.tr(tags.td(*caption),
                            *[tags.td(tags.img(src=names[k], alt=k)) for k in ("photo", "pred", "gt")])
        sc = results["scorer"]
        how = (f"trained at {sc['image_size']}x{sc['image_size']}" if sc.get("kind", "trained") == "trained"
               else "published weights")
        tags.p(f"scorer {sc['path']} ({sc['arch']}, {how}), sha256 "
               f"{sc['sha256']}; created {results['created']}.", cls="meta")
    atomic_write_text(out / REPORT_HTML, doc.render())


def fmt3(x: float | None) -> str:
    """A score with three decimals, ``n/a`` when undefined (the HTML page and the command's summary line)."""
    return "n/a" if x is None else f"{x:.3f}"
