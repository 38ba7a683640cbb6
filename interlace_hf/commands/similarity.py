"""`python -m interlace_hf.similarity ARGS`, also under `torchrun` / `accelerate launch` (data parallel): the flags of
`interlace-hf similarity`; every rank scores its share of the seeded sample, rank 0 merges and reports."""

from __future__ import annotations

import argparse
import sys

from ..args import SimilarityArgs, add_dataclass_arguments, from_namespace
from . import configure_logging


def main(argv: list[str] | None = None) -> int:
    from ..similarity import distributed_info, run_similarity

    parser = argparse.ArgumentParser(prog="python -m interlace_hf.similarity", description=__doc__)
    add_dataclass_arguments(parser, SimilarityArgs)
    args = from_namespace(SimilarityArgs, parser.parse_args(argv))
    configure_logging()
    try:
        result = run_similarity(args)
    except ValueError as err:
        print(f"interlace-hf similarity: error: {err}", file=sys.stderr)
        return 2
    if distributed_info()[0] == 0:
        print(f"scored {result.num_samples} samples; files in {args.output_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
