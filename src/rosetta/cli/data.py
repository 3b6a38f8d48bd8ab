"""``rosetta data ...``: render, download, convert, validate, describe and audit datasets."""
from __future__ import annotations

import argparse
import json
import typing
from pathlib import Path

from rosetta.cli.common import add_config_args, config_from_args, positive_int
from rosetta.errors import RosettaError
from rosetta.layout import DataLayout
from rosetta_infer.charset import Charset
from rosetta_infer.settings import ConfidenceRule

SOURCE_NAMES = ("mjsynth", "synthtext", "lmdb", "benchmarks")


def add_parsers(subparsers) -> None:
    data = subparsers.add_parser("data", help="render, download, convert, validate, describe and audit datasets",
                                 description="Dataset commands. Each reads params.yaml (-c) with -o overrides.")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="render the synthetic MJSynth-layout dataset",
                       description="Render train/val/test word images in MJSynth's layout (90kDICT32px/, "
                                   "annotation_*.txt, lexicon.txt) from data.synth; the test split uses font "
                                   "families train and val never see.")
    p.add_argument("out", metavar="OUT", help="output folder (replaced when complete)")
    add_config_args(p)
    p.set_defaults(func=_synth)

    p = sub.add_parser("samples", help="a picture of the renderer's effects, one row each",
                       description="Render a few words once per effect of data.synth.effects (that effect "
                                   "always on, the others off), plus 'none' and the configured mix 'all', "
                                   "into one PNG, for a person to see what training looks at.")
    p.add_argument("out", metavar="OUT.png", help="the picture to write")
    add_config_args(p)
    p.set_defaults(func=_samples)

    p = sub.add_parser("download", help="download (resumably) and extract a dataset",
                       description="Download URL_OR_NAME with resume, retries and sha256 check, then extract "
                                   "an archive into OUT. NAME is one of " + ", ".join(SOURCE_NAMES) +
                                   " and takes the URL (and sha256) from data.<NAME> in params. A local path "
                                   "or file:// URL works too. Archives are kept in <data.root>/downloads.")
    p.add_argument("source", metavar="URL_OR_NAME", help="URL, local path, or " + "|".join(SOURCE_NAMES))
    p.add_argument("out", metavar="OUT", help="folder to extract into")
    p.add_argument("--sha256", metavar="HEX", default=None, help="expected sha256 of the downloaded file")
    add_config_args(p)
    p.set_defaults(func=_download)

    p = sub.add_parser("convert", help="convert a dataset to LMDB",
                       description="Write LMDB(s) in the DTRB/PaddleOCR format under OUTPUT. mjsynth: INPUT "
                                   "holds annotation_*.txt (or a parent of it) -> OUTPUT/{train,val,test}; "
                                   "synthtext: INPUT holds gt.mat -> OUTPUT/train (one sample per word box); "
                                   "gt-file: INPUT is a file of 'path<TAB>label' lines -> OUTPUT. Unreadable "
                                   "images and empty labels are skipped and counted in OUTPUT/**/report.json.")
    p.add_argument("--format", required=True, choices=("mjsynth", "synthtext", "gt-file"), help="input layout")
    p.add_argument("input", metavar="INPUT", help="dataset folder, or the gt file")
    p.add_argument("output", metavar="OUTPUT", help="output folder")
    add_config_args(p)
    p.set_defaults(func=_convert)

    p = sub.add_parser("validate", help="check LMDBs with the Great Expectations suite",
                       description="Validate every LMDB under LMDB_DIR against data.validation (decodable "
                                   "images, charset conformity, height, aspect ratio, sample count). Prints a "
                                   "summary per LMDB, writes the full GX results as JSON, and exits 1 when "
                                   "any check fails.")
    p.add_argument("lmdb_dir", metavar="LMDB_DIR", help="an LMDB, or a folder of LMDBs")
    p.add_argument("--results", metavar="DIR", default=None,
                   help="where the GX result JSONs go (default: <data.root>/reports/checks/<LMDB_DIR's name>; the "
                        "pipeline's validate stage alone writes <data.root>/reports/validation)")
    add_config_args(p)
    p.set_defaults(func=_validate)

    p = sub.add_parser("stats", help="label counts, length histogram and character frequencies",
                       description="Statistics of the labels of every LMDB under LMDB_DIR (no image is "
                                   "decoded): samples, how many the charset keeps, label lengths, characters.")
    p.add_argument("lmdb_dir", metavar="LMDB_DIR", help="an LMDB, or a folder of LMDBs")
    p.add_argument("--json", action="store_true", help="print the full statistics as JSON")
    add_config_args(p)
    p.set_defaults(func=_stats)

    p = sub.add_parser("audit", help="likely label errors: samples a model reads otherwise, with confidence",
                       description="Read every sample of SET (a gt-file set <SET>/gt.txt, an LMDB, or a folder of "
                                   "them) with a model and list those it reads otherwise than their label (the label "
                                   "as the model's charset reads it), a confident reading far from the label first "
                                   "(score: confidence x normalized edit distance): OUT/audit.tsv (every one) and "
                                   "OUT/audit.html (the first --top, the crops embedded: it opens offline). The "
                                   "data is only read, never changed.")
    p.add_argument("set", metavar="SET", help="a gt-file set folder, an LMDB folder, or a folder of sets")
    p.add_argument("--model", metavar="MODEL", default=None,
                   help="checkpoint (.pt), exported model (.onnx) or models:/<name>@<alias> (default: "
                        "models:/<registry.model_name>@<registry.alias>, the production version)")
    p.add_argument("--out", metavar="DIR", default=None, help="where audit.tsv and audit.html go (default: "
                                                                "runs/audit/<SET's folder name>)")
    p.add_argument("--confidence", metavar="RULE", choices=typing.get_args(ConfidenceRule), default="min",
                   help="the reading's confidence: min (default: every character sure), mean or geometric")
    p.add_argument("--top", type=positive_int, default=200, help="samples shown on the page (default 200)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (PyTorch checkpoints)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass (default 64)")
    add_config_args(p)
    p.set_defaults(func=_audit)


def _synth(args: argparse.Namespace) -> int:
    from rosetta.prep.synth import render_dataset

    cfg = config_from_args(args)
    render_dataset(args.out, cfg.data.synth, cfg.seed, cfg.data.workers)
    return 0


def _samples(args: argparse.Namespace) -> int:
    from rosetta.prep.synth import effect_samples, sample_sheet

    cfg = config_from_args(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sample_sheet(effect_samples(cfg.data.synth, cfg.seed)).save(out)
    print(f"samples: {out}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from rosetta.prep.download import fetch

    cfg = config_from_args(args)
    url, sha256 = args.source, args.sha256
    if args.source in SOURCE_NAMES:
        spec = getattr(cfg.data, args.source)
        if not spec.url:
            raise RosettaError(f"data.{args.source}.url is empty; set it in params.yaml or give a URL")
        url, sha256 = spec.url, sha256 or spec.sha256
    out = fetch(url, Path(args.out), DataLayout.from_config(cfg).root / "downloads", sha256)
    print(f"{url} -> {out}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from rosetta.prep.convert import convert

    cfg = config_from_args(args)
    for name, report in convert(args.format, args.input, args.output, cfg.data.workers).items():
        rejected = ", ".join(f"{k} {v}" for k, v in report["rejected"].items()) or "none"
        print(f"{name}: {report['written']} samples written, rejected: {rejected}")
        if outside := report["rejected"].get("outside_folder"):
            shown = ", ".join(report["examples"]["outside_folder"])
            print(f"{name}: {outside} path(s) of the gt file leave the set's folder ({shown}) and were not read; keep "
                  "a set's images inside its folder")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from rosetta.prep.validate import validate_tree

    cfg = config_from_args(args)
    results_dir = Path(args.results) if args.results else DataLayout.from_config(cfg).checks(args.lmdb_dir)
    results = validate_tree(args.lmdb_dir, Charset.from_config(cfg.charset), cfg.data.validation,
                            results_dir, cfg.data.workers)
    for result in results:
        print(result.summary)
    print(f"GX results written to {results_dir}")
    return 0 if all(r.success for r in results) else 1


def _stats(args: argparse.Namespace) -> int:
    from rosetta.prep.stats import lmdb_stats, summary

    cfg = config_from_args(args)
    stats = lmdb_stats(args.lmdb_dir, Charset.from_config(cfg.charset))
    if args.json:
        print(json.dumps(stats, indent=2, ensure_ascii=False))
        return 0
    for name, part in [*stats["sets"].items(), ("total", stats["total"])]:
        line = ", ".join(f"{k} {v}" for k, v in summary(part).items())
        print(f"{name}: {line}")
    top = list(stats["total"]["characters"].items())[:20]
    print("most frequent characters: " + " ".join(f"{c!r}:{n}" for c, n in top))
    return 0



def _audit(args: argparse.Namespace) -> int:
    from rosetta.evaluation.audit import audit, count_samples, set_samples, write_html, write_tsv
    from rosetta.params import project_path
    from rosetta.recognition.model_file import load_recognizer, model_file
    from rosetta_infer.preprocess import ImageLimits

    cfg = config_from_args(args)
    folder = Path(args.set)
    out = Path(args.out) if args.out else project_path("runs/audit") / folder.resolve().name
    model = args.model or f"models:/{cfg.registry.model_name}@{cfg.registry.alias}"
    limits = ImageLimits.from_config(cfg.serve)
    with model_file(cfg, model) as path:
        recognizer = load_recognizer(path, args.device, args.batch_size, cfg.eval.threads, args.confidence)
        report = audit(recognizer, set_samples(folder, limits), count_samples(folder))
    out.mkdir(parents=True, exist_ok=True)
    tsv = write_tsv(report.suspects, out / "audit.tsv")
    page = write_html(report.suspects[:args.top], out / "audit.html", f"rosetta data audit {folder.name}: {model}")
    print(f"{folder}: {report.samples} samples, {report.agreed} read as labelled, {len(report.suspects)} read "
          f"otherwise" + (f", {report.unlearnable} labels the model's charset cannot read" if report.unlearnable
                          else "") + (f", {report.unreadable} images unreadable" if report.unreadable else ""))
    for rank, s in enumerate(report.suspects[:5], 1):
        print(f"{rank}\t{s.sample.where}\tlabel {s.sample.label!r}\tread {s.reading!r}\t{s.confidence:.2f}")
    print(f"ranked list: {tsv}\npage with the crops: {page}")
    return 0
