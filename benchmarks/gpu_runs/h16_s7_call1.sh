#!/bin/bash
# Issue 16 (session 7), call 1 of 2: stash GGUF part A and the carried site-packages
# (make_carry.sh), run the Triton decode kernels' unit tests on the GPU (compiled, not
# interpreted), then benchmarks/bench_gpu.py's decode on random weights in SmolLM2-135M's shape:
# eager vs CUDA graph vs graph + torch.compile vs graph + fused Triton step, tg128, batch 1 and
# batched (B=...: row counts; COMPILE= leaves torch.compile out).
set -x
mkdir -p /root/stash /tmp/site && cp .gpu/a.part /root/stash/a.part && tar xJf .gpu/site.tar.xz -C /tmp/site
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
python3 -c "import torch, transformers, triton; print(torch.__version__, transformers.__version__, triton.__version__)"
timeout ${TT:-120} python3 -m pytest -q -p no:cacheprovider tests/unit/test_triton_decode.py 2>&1 | tail -4
timeout ${T:-330} python3 benchmarks/bench_gpu.py --config .gpu/cfg --skip scoring --decode-dtypes ${DT:-bfloat16,float32} \
  --triton ${COMPILE---compile} --batches ${B:-8,32} --reps 3 --json $OUT/bench_gpu_decode_triton.json 2>&1 | grep -v Warning
