"""Run `interlace_hf.train` under torchrun and write what each rank ends with (a digest per parameter), so a test can
check that the ranks agree. Not a test module: tests/test_train_real_path.py launches it."""

import hashlib
import json
import sys
from pathlib import Path

import torch.distributed as dist

from interlace_hf.train import parse_train_args, run_training


def main() -> None:
    train_args, sft_config, source = parse_train_args(sys.argv[1:])
    trainer = run_training(train_args, sft_config, source)
    rank = dist.get_rank() if dist.is_initialized() else 0
    report = {"world_size": dist.get_world_size() if dist.is_initialized() else 1,
              "global_step": trainer.state.global_step, "deepspeed": trainer.is_deepspeed_enabled,
              "checkpointing": trainer.args.activation_checkpointing_kwargs,
              "logged": sorted({key for entry in trainer.state.log_history for key in entry})}
    if trainer.is_deepspeed_enabled:
        # ZeRO-3: each rank holds a shard of each parameter (the saved, gathered model is checked by the test).
        report["zero_stage"] = trainer.deepspeed.zero_optimization_stage()
        report["sharded"] = sum(p.ds_tensor.numel() < p.ds_numel for p in trainer.model.parameters()
                                if hasattr(p, "ds_tensor"))
        if trainer.teacher is not None:
            report["teacher_sharded"] = sum(p.ds_tensor.numel() < p.ds_numel
                                            for p in trainer.teacher.module.parameters() if hasattr(p, "ds_tensor"))
    else:
        report["parameters"] = {name: hashlib.sha256(param.detach().float().contiguous().numpy().tobytes()).hexdigest()
                                for name, param in trainer.model.named_parameters()}
    out = Path(sft_config.output_dir)
    (out.parent / f"ddp-rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
