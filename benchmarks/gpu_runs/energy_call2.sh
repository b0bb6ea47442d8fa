#!/bin/bash
# Energy per token on the H200 (issue 17). Call 1 is call1_stash_and_build.sh (model part A stashed,
# CUDA llama-cpp-python build started); this is call 2 on the same warm machine: rebuild the model,
# install the build, check NVML's total-energy counter, then run the hardware suite on the GPU.
# Every pp/tg measurement now carries NVML board energy per repetition (harness/energy.py), so the
# H200 rows of Figure 6 get joules per prompt and per generated token. Carry nvidia-ml-py as a wheel
# (pip download --no-deps nvidia-ml-py==13.615.71 -d .whl) in case the image lacks pynvml.
# Output: $OUT/gpu_energy.tgz (results/ and reports/): unpack into benchmarks/gpu_runs/ and point
# suites/hardware.yaml's gpu_h200 task (params.stored_run) at the new run folder.
set -x
test -f /root/stash/a.part || { echo "COLD MACHINE: part A is missing"; exit 3; }
cat /root/stash/a.part .gpu/b.part > /root/model.gguf
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  /root/model.gguf" | sha256sum -c || exit 4
for i in $(seq 1 85); do test -f /root/build.done && break; sleep 3; done
if test -f /root/build.done; then cat /root/build.done; else echo "BUILD NOT DONE: stopping it"; kill -- -$(cat /root/build.pid); fi
ls /root/wheel/llama_cpp_python-*.whl && python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site /root/wheel/llama_cpp_python-*.whl .whl/diskcache-*.whl
PYTHONPATH=/tmp/site python3 -c "import pynvml" 2>/dev/null || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/nvidia_ml_py-*.whl
CUDA_HOME=$(dirname $(dirname $(readlink -f $(which nvcc || echo /usr/local/cuda/bin/nvcc))))
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SMOLLM2_135M_GGUF=/root/model.gguf SHAKTI_EVAL_CACHE=/root/cache
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false LD_LIBRARY_PATH=$CUDA_HOME/lib64:$LD_LIBRARY_PATH
python3 -c "
from harness.energy import open_meter
import time
m, why = open_meter('cuda'); print('energy meter:', why, m and m.describe())
if m: a = m.read(); time.sleep(1.0); print('idle board power over 1 s: %.1f W' % (m.read() - a)); m.close()"
mkdir -p /root/out
timeout 420 python3 run_all.py --model smollm2-135m-hf --suite hardware --output /root/out/results --reports /root/out/reports --no-progress 2>&1 | grep -v "^llama_\|^load_tensors\|^print_info\|^ggml_\|^srv\|^common_" | tail -40
python3 - <<'PY'
import glob, json
for f in glob.glob('/root/out/results/*/results.json'):
    for name, d in json.load(open(f))['tasks'].items():
        rec = d.get('measurement') or {}
        for k in ('pp', 'tg'):
            e = (rec.get('timings', {}).get(k) or {}).get('energy') or {}
            print(name, k, round(rec.get('timings', {}).get(k, {}).get('tps_mean', 0), 1), 't/s',
                  e.get('joules_per_token'), 'J/token', e.get('mean_watts'), 'W', 'coarse' if e.get('coarse') else '')
PY
nvidia-smi --query-gpu=name,driver_version,power.draw,clocks.sm --format=csv
cd /root/out && tar czf $OUT/gpu_energy.tgz --exclude='cache.sqlite*' results reports; ls -la $OUT
