"""``audit teachers import PATH --arch NAME --dataset NAME``: a released teacher's checkpoint as a
teacher-cache entry, for ``audit run --teacher-weights``."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("teachers", help="released teachers: import a checkpoint into the teacher cache")
    actions = p.add_subparsers(dest="teachers_command", required=True, parser_class=type(p))
    imp = actions.add_parser(
        "import", help="import a checkpoint file (RepDistiller, mdistiller, the seed survey, a plain state_dict)",
        description="Read a checkpoint safely (weights only), map its keys onto our architecture, refuse any "
                    "missing, extra or mis-shaped key, and write a teacher-cache entry (safetensors + provenance "
                    "with the file's sha256). Prints the entry's .safetensors path; give it to "
                    "`audit run --teacher-weights`.")
    imp.add_argument("path", type=Path, metavar="PATH", help="the checkpoint file (e.g. resnet32x4_vanilla/ckpt_epoch_240.pth)")
    imp.add_argument("--arch", required=True, help="our architecture name (see the README's model list, e.g. resnet32x4)")
    imp.add_argument("--dataset", required=True, help="the data set it was trained on (fixes the number of classes)")
    imp.add_argument("--network", choices=("student", "teacher"), default=None,
                     help="which network of an mdistiller trainer file (it holds both)")
    imp.add_argument("--cache-dir", type=Path, default=None, help="teacher cache (default ~/.cache/kd-audit/teachers)")
    imp.set_defaults(func=import_main)


def import_main(args: argparse.Namespace) -> int:
    # torch loads only when a command needs it
    from audit.engine.teacher_import import import_teacher

    entry = import_teacher(args.path, arch=args.arch, dataset=args.dataset, cache_dir=args.cache_dir, network=args.network)
    print(entry)
    return 0
