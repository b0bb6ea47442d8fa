#!/bin/bash
# Issue 16 (session 5), one call on the H200: the decode benchmark (benchmarks/bench_gpu.py) on
# random weights in SmolLM2-135M's shape (.gpu/cfg: the config transformers reads from the shipped
# GGUF): eager vs the captured graph (grouped-query attention folded into the query length, cache
# spans sized to the positions in use) vs the same graph around a torch.compile'd step; tg128 at
# batch 1 (synchronised after every token, as the hardware suite's tg does), batch 8 and 32.
set -x
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv
python3 -c "import torch, transformers, triton; print(torch.__version__, transformers.__version__, triton.__version__)"
timeout ${T:-400} python3 benchmarks/bench_gpu.py --config .gpu/cfg --skip scoring --compile --reps 3 \
  --json $OUT/bench_gpu_decode.json 2>&1 | grep -v Warning
