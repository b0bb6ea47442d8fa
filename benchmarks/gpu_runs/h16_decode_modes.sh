#!/bin/bash
# Issue 16 (session 6), one call on the H200: batch-1 tg128 of the captured decode graph, plain and
# around a torch.compile'd step in two Inductor modes (default; max-autotune-no-cudagraphs, which
# autotunes the matrix products and fuses element-wise work into their epilogues), bf16, random
# weights in SmolLM2-135M's shape (.gpu/cfg: the config transformers reads from the shipped GGUF).
set -x
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv
python3 -c "import torch, transformers, triton; print(torch.__version__, transformers.__version__, triton.__version__)"
timeout ${T:-520} python3 benchmarks/bench_gpu.py --config .gpu/cfg --skip scoring --decode-dtypes bfloat16 \
  --compile-modes default,max-autotune-no-cudagraphs --reps 3 --json $OUT/bench_gpu_decode_modes.json 2>&1 | grep -v Warning
