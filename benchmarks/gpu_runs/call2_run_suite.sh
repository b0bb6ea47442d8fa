#!/bin/bash
# Call 2 on the H200 (within the 30 s the machine stays warm): rebuild the model from both parts,
# wait for the llama.cpp CUDA build, install it with diskcache (its one dependency missing there), run the suite.
set -x
test -f /root/stash/a.part || { echo "COLD MACHINE: part A is missing"; exit 3; }
cat /root/stash/a.part .gpu/b.part > /root/model.gguf
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  /root/model.gguf" | sha256sum -c || exit 4
for i in $(seq 1 85); do test -f /root/build.done && break; sleep 3; done
if test -f /root/build.done; then cat /root/build.done; else echo "BUILD NOT DONE: stopping it"; kill -- -$(cat /root/build.pid); fi
tail -4 /root/build.log; ls -la /root/wheel 2>/dev/null
ls /root/wheel/llama_cpp_python-*.whl 2>/dev/null && python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site /root/wheel/llama_cpp_python-*.whl .whl/diskcache-*.whl
CUDA_HOME=$(dirname $(dirname $(readlink -f $(which nvcc || echo /usr/local/cuda/bin/nvcc))))
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SMOLLM2_135M_GGUF=/root/model.gguf SHAKTI_EVAL_CACHE=/root/cache
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false LD_LIBRARY_PATH=$CUDA_HOME/lib64:$LD_LIBRARY_PATH
python3 -c "import llama_cpp; print('llama_cpp', llama_cpp.__version__, 'gpu offload', llama_cpp.llama_supports_gpu_offload())"
mkdir -p /root/out
timeout 290 python3 run_all.py --model smollm2-135m-hf --suite hardware --output /root/out/results --reports /root/out/reports --no-progress 2>&1 | grep -v "^llama_\|^load_tensors\|^print_info\|^ggml_\|^srv\|^common_" | tail -50
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv
cd /root/out && tar czf $OUT/gpu_run.tgz --exclude='cache.sqlite*' results reports
tail -c 200000 /root/build.log > $OUT/build_log_tail.txt; cp /root/build.done $OUT/ 2>/dev/null; ls -la $OUT
