"""`scripts/gpu_check.sh --cpu-smoke`: the GPU check's code paths at tiny shapes on the CPU, so that the one call a
session with a lent GPU makes does not fail on something a CPU could have caught."""

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_cpu_smoke(tmp_path):
    out = tmp_path / "gpu"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--cpu-smoke", str(out)],
                            capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    train = json.loads((out / "bench_train_tiny.json").read_text())
    assert {"interlace", "kd", "lora", "full"} == set(train["modes"])
    interlace, full = train["modes"]["interlace"], train["modes"]["full"]
    kd, lora = train["modes"]["kd"], train["modes"]["lora"]
    assert lora["trainable"] < interlace["trainable"] == kd["trainable"] < full["trainable"]
    assert kd["teacher_bytes"] > 0 and kd["flops"]["teacher"] > 0 and lora["tuned_moved_fraction"] > 0.9
    assert train["ratios"]["ideal_step_kd_over_interlace"] > 1 > train["ratios"]["ideal_step_lora_over_interlace"]
    assert interlace["tuned_dtype"] == "torch.float32" and interlace["tuned_moved_fraction"] > 0.9
    assert 1 < interlace["ideal_flops_over_forward"] < full["ideal_flops_over_forward"] < 4
    assert train["ratios"]["ideal_step_interlace_over_full"] < 1
    assert {"torch", "transformers", "trl"} <= set(train["versions"]) and train["command"].startswith("python ")
    ttft = json.loads((out / "bench_ttft_tiny.json").read_text())
    assert [m["name"] for m in ttft["models"]][:2] == ["base", "25pc"] and "stock_vs_interlace" in ttft
    large = json.loads((out / "bench_ttft_tiny_large.json").read_text())
    assert large["prompt"]["image_tokens"] > ttft["prompt"]["image_tokens"]  # the large-prompt setting
    similarity = json.loads((out / "similarity_tiny.json").read_text())
    assert similarity["records"] == 8 and similarity["samples_per_s"] > 0 and similarity["projected_hours_24k"] > 0
    assert "gpu_check: done" in (out / "gpu_check.log").read_text()
