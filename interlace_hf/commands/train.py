"""`interlace-hf train` and `accelerate launch -m interlace_hf.train`: a YAML recipe and TRL-style flags -> the
INTERLACE fine-tune (`interlace_hf.train.run_training`)."""

from __future__ import annotations

import sys

from . import configure_logging


def main(argv: list[str] | None = None) -> int:
    from ..train import parse_train_args, run_training

    configure_logging()
    try:
        train_args, sft_config, source = parse_train_args(argv)
        trainer = run_training(train_args, sft_config, source)
    except ValueError as err:
        print(f"interlace-hf train: error: {err}", file=sys.stderr)
        return 2
    if trainer is None:
        print(f"{sft_config.output_dir} already holds this training run, finished (--overwrite to retrain)")
        return 0
    print(f"trained {trainer.state.global_step} steps; checkpoint in {sft_config.output_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
