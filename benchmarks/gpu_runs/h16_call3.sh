#!/bin/bash
# Issue 16, call 3 (fresh machine): stash GGUF part B and the site-packages again, then the
# decode benchmark (eager vs CUDA-graph tg128, batch 1/8/32) on random weights in SmolLM2's shape.
set -x
mkdir -p /root/stash /tmp/site && cp .gpu/b.part /root/stash/b.part && tar xJf .gpu/site.tar.xz -C /tmp/site
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
timeout 150 python3 benchmarks/bench_gpu.py --config .gpu/cfg --skip scoring --reps 2 --json $OUT/bench_gpu_decode.json 2>&1 | grep -v Warning
