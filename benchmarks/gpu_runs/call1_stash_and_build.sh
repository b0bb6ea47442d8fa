#!/bin/bash
# Call 1 on the H200: stash model part A, install carried wheels, start the llama.cpp CUDA build in its own session.
set -x
mkdir -p /root/stash && cp .gpu/a.part /root/stash/a.part
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
mkdir -p /root/lc && tar xzf .gpu/llama_trim.tar.gz -C /root/lc
bash benchmarks/gpu_runs/start_cuda_build.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import sys, torch, transformers; print(sys.version.split()[0], torch.__version__, torch.version.cuda, transformers.__version__, torch.cuda.get_device_name(0))"
PYTHONPATH=/tmp/site python3 -c "import pydantic, gguf, yaml, jinja2, matplotlib, pynvml; print('pydantic', pydantic.VERSION, 'gguf ok')"
nproc; free -g | head -2; python3 -m pip show scikit-build-core cmake ninja 2>/dev/null | grep -E "^(Name|Version)"
sleep 5; tail -3 /root/build.log; ls /root/stash -la
