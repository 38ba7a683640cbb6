"""`interlace-hf testbed`: a small Qwen3-VL trained on the synthetic set (`train`), every strategy's retention
measured on it and the paper's table (`compare`)."""
