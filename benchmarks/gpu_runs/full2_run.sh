#!/bin/bash
# Full-suite call 2 on the H200 (within the 30 s the machine stays warm after call 1): rebuild the
# model from both parts, wait for the llama.cpp CUDA build, then start (setsid, so they outlive the
# call) the academic and responsible-AI full profiles on smollm2-135m-hf (the same Q4_1 weights
# through transformers) on the GPU, writing under /root/res ($OUT, /root/out, is emptied by every
# call); full3_collect.sh waits and packs. The llama.cpp CUDA runs of smollm2-135m-q4 crashed in
# the harness process there (README.md), so they are not started here.
set -x
test -f /root/stash/a.part || { echo "COLD MACHINE: part A is missing"; exit 3; }
cat /root/stash/a.part .gpu/b.part > /root/model.gguf
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  /root/model.gguf" | sha256sum -c || exit 4
for i in $(seq 1 100); do test -f /root/build.done && break; sleep 3; done
cat /root/build.done && python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site /root/wheel/llama_cpp_python-*.whl
CUDA_HOME=$(dirname $(dirname $(readlink -f $(which nvcc || echo /usr/local/cuda/bin/nvcc))))
cat > /root/env.sh <<EOS
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SMOLLM2_135M_GGUF=/root/model.gguf SHAKTI_EVAL_CACHE=/root/cache
export SHAKTI_EVAL_DATA=/root/data HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export LD_LIBRARY_PATH=$CUDA_HOME/lib64:\$LD_LIBRARY_PATH
EOS
. /root/env.sh
python3 -c "import yaml; d = yaml.safe_load(open('/root/models_cuda.yaml')); d['models']['smollm2-135m-hf']['device'] = 'cuda'; yaml.safe_dump(d, open('/root/models_cuda.yaml', 'w'), sort_keys=False)"
rm -rf /root/repo && cp -r . /root/repo && cd /root/repo
# convert the GGUF to the transformers folder once, before two runs race to do it
python3 -c "from pathlib import Path; from harness.backends.base import file_digest; from harness.backends.transformers import converted_folder; p = Path('/root/model.gguf'); print(converted_folder(p, file_digest(p)))"
for s in academic responsible_ai; do
  setsid nohup bash -c ". /root/env.sh; cd /root/repo; s=\$(date +%s); python3 run_all.py --model smollm2-135m-hf --suite $s --profile full --output /root/res/hf_$s --registry /root/models_cuda.yaml --no-progress; echo rc=\$? seconds=\$(( \$(date +%s) - s )) > /root/hf_$s.done" > /root/hf_$s.log 2>&1 < /dev/null &
done
bash benchmarks/gpu_runs/full3_collect.sh $(( 560 - SECONDS ))
