"""The ``medgan`` command line: ``medgan generate``, ``medgan phantoms``, ``medgan slurm-check``.

Bad input (a missing or unreadable file, a bad value) is reported as one line on stderr and exit
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from medgan import __version__

PHANTOM_COUNT_KEY = {"fundus": "n_images"}  # --n means n_subjects for the other kinds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medgan", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"medgan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write synthetic images from a trained checkpoint",
                         description="Write N synthetic images (NIfTI and/or PNG) with "
                                     "manifest.tsv, manifest.json and latents.npy.")
    gen.add_argument("checkpoint", help="checkpoint.pt of a trained GAN")
    gen.add_argument("out_dir", help="output directory (replaced atomically)")
    gen.add_argument("-n", "--n", type=int, required=True, help="number of images")
    gen.add_argument("--seed", type=int, default=0, help="latent seed (default 0)")
    gen.add_argument("--format", nargs="+", choices=["nifti", "png"], default=["nifti", "png"],
                     dest="formats", help="output formats (default: nifti png)")
    gen.add_argument("--nifti-layout", choices=["per_channel", "multichannel"],
                     default="per_channel", help="one file per channel, or one (H, W, 1, C) "
                                                 "file per image (default per_channel)")
    gen.add_argument("--png-dtype", choices=["uint8", "uint16"], default="uint8")
    gen.add_argument("--batch-size", type=int, default=256)
    gen.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")

    ph = sub.add_parser("phantoms", help="write synthetic stand-ins for a dataset release")
    ph.add_argument("kind", help="dataset kind: brats, oasis, prostatex, fundus")
    ph.add_argument("out_dir")
    ph.add_argument("--n", type=int, default=None,
                    help="number of subjects (fundus: images); default: the generator's own")
    ph.add_argument("--seed", type=int, default=0)

    sc = sub.add_parser("slurm-check", help="before a SLURM run: check every job's request "
                                            "against the cluster (exit 1 if one cannot run)",
                        description="Compare what each job of a SLURM run will ask for (threads,"
                                    " memory, runtime, partition, GPUs; from a dry run with the "
                                    "profile) with the cluster's partitions (sinfo), and the "
                                    "status command with its accounting (scontrol show config).")
    sc.add_argument("--workflow-profile", default="workflow/profiles/slurm",
                    help="the SLURM profile (default workflow/profiles/slurm)")
    sc.add_argument("--directory", default=".", help="the workflow's directory (default: here)")
    sc.add_argument("--snakemake", default="snakemake", help="the snakemake command")
    sc.add_argument("snakemake_args", nargs=argparse.REMAINDER,
                    help="targets and options of the planned run, e.g. --configfile my.yaml")
    return parser


def _slurm_check(args: argparse.Namespace) -> int:
    from medgan.cluster.slurm_check import slurm_check

    extra = args.snakemake_args[1:] if args.snakemake_args[:1] == ["--"] else args.snakemake_args
    requests, problems = slurm_check(args.workflow_profile, extra, snakemake=args.snakemake,
                                     cwd=args.directory)
    for line in problems:
        print(f"medgan slurm-check: {line}", file=sys.stderr)
    rules = sorted({r.rule for r in requests})
    print(f"{len(requests)} job(s) of {len(rules)} rule(s) checked: "
          + (f"{len(problems)} problem(s)" if problems else "every request fits the cluster"))
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 slurm-check found problems,
    2 bad input)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "generate":
            from medgan.training.generate import write_synthetic

            manifest = write_synthetic(args.checkpoint, args.out_dir, n=args.n, seed=args.seed,
                                       formats=args.formats, nifti_layout=args.nifti_layout,
                                       png_dtype=args.png_dtype, batch_size=args.batch_size,
                                       device=args.device)
            print(f"wrote {manifest['n']} images ({', '.join(manifest['formats'])}) "
                  f"to {args.out_dir}")
        elif args.command == "slurm-check":
            return _slurm_check(args)
        else:
            from medgan.data.phantoms import make_phantoms

            params = {"seed": args.seed}
            if args.n is not None:
                params[PHANTOM_COUNT_KEY.get(args.kind, "n_subjects")] = args.n
            written = make_phantoms(args.kind, args.out_dir, **params)
            print(f"wrote {len(written)} {args.kind} phantom(s) to {args.out_dir}")
    except (ValueError, TypeError, OSError) as err:  # InputError is a ValueError
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"medgan {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
