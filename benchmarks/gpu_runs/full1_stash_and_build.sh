#!/bin/bash
# Full-suite call 1 on the H200 (see README.md): stash model part A, unpack the carried
# site-packages (lm-eval and friends, as unzipped wheels) and mirror subset, start the llama.cpp
# CUDA build in its own session, check that the harness imports there.
set -x
mkdir -p /root/stash /tmp/site /root/data /root/lc
cp .gpu/a.part /root/stash/a.part
tar xJf .gpu/site.tar.xz -C /tmp/site
tar xJf .gpu/data.tar.xz -C /root/data
tar xJf .gpu/llama_trim.tar.xz -C /root/lc
cp .gpu/models_cuda.yaml /root/models_cuda.yaml
bash benchmarks/gpu_runs/start_cuda_build.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
nproc; lscpu | grep "Model name"
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 SHAKTI_EVAL_DATA=/root/data
python3 -c "import lm_eval, datasets, pydantic, gguf, diskcache, rouge_score, sqlitedict, harness.cli, harness.suites.academic; print('imports ok', datasets.__version__)"
python3 run_all.py --list-suites | head -12
sleep 3; tail -2 /root/build.log; ls /root/data
