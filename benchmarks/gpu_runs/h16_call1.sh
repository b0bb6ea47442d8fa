#!/bin/bash
# Issue 16, call 1 on the H200: stash GGUF part B and the carried site-packages (lm-eval and
# friends, unzipped wheels), check the image, then benchmarks/bench_gpu.py on random weights in
# SmolLM2-135M's shape (decode: eager vs CUDA graph; scoring: one pack per pass vs token budgets).
set -x
mkdir -p /root/stash /tmp/site && cp .gpu/b.part /root/stash/b.part && tar xJf .gpu/site.tar.xz -C /tmp/site
nvidia-smi --query-gpu=name,driver_version,memory.total,utilization.gpu,clocks.sm --format=csv
which nvcc; nvcc --version 2>&1 | tail -1; nproc
ls ../shared/datasets/hub 2>&1 | head -2
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 -c "import torch, transformers, pynvml, lm_eval, datasets, pydantic, harness.cli, harness.suites.academic; print(torch.__version__, transformers.__version__, 'imports ok')"
timeout 400 python3 benchmarks/bench_gpu.py --config .gpu/cfg --items 3000 --reps 2 --json $OUT/bench_gpu_random.json 2>&1 | grep -v Warning
