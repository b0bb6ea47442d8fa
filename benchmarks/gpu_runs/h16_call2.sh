#!/bin/bash
# Issue 16, call 2 on the H200 (within the 30 s the machine stays warm after call 1): rebuild the
# GGUF from both parts, dequantize it into /root/hf (transformers' own conversion, as
# smollm2-135m-hf does; tokenizer files carried from that conversion), then the full academic
# suite through the transformers adapter at fp32 and at bf16 under an NVML sampler
# (timed_run.py: seconds, utilisation and memory per task), then the comparisons.
# (It ran with the first, subprocess form of timed_run.py: `timed_run.py OUT -- python3 run_all.py ARGS`; the
# script now runs the harness in-process and takes `timed_run.py OUT -- ARGS`, as h16_call4.sh does.)
set -x
test -f /root/stash/b.part || { echo "COLD MACHINE: part B is missing"; exit 3; }
cat .gpu2/a.part /root/stash/b.part > /root/model.gguf
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  /root/model.gguf" | sha256sum -c || exit 4
mkdir -p /root/data /root/res && tar xJf .gpu2/data.tar.xz -C /root/data
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export SHAKTI_EVAL_DATA=/root/data SHAKTI_EVAL_CACHE=/root/cache
python3 -c "from pathlib import Path; from harness.backends.transformers import _convert_weights; _convert_weights(Path('/root/model.gguf'), Path('/root/hf'))" 2>&1 | tail -1
cp .gpu2/hfmeta/* /root/hf/ && ls /root/hf
R=benchmarks/gpu_runs
for m in h200-smollm2-fp32 h200-smollm2-bf16; do
  timeout ${RUN_TIMEOUT:-230} python3 $R/timed_run.py $OUT/timed_$m.json -- python3 run_all.py --model $m --registry $R/h16_models.yaml \
    --suite academic --profile full --output /root/res/$m --no-progress 2>&1 | grep -v "Warning\|warn(" | tail -30
done
A=$(ls -d /root/res/h200-smollm2-fp32/*/ | head -1); B=$(ls -d /root/res/h200-smollm2-bf16/*/ | head -1)
python3 $R/compare_runs.py $R/h200-20261128-220112-academic-full $A 2>&1 | tee $OUT/compare_fp32_vs_stored.txt | tail -20
python3 $R/compare_runs.py $R/h200-20261128-220112-academic-full $B $A 2>&1 | tee $OUT/compare_bf16_vs_stored_and_fp32.txt | tail -24
for r in $A $B; do n=$(basename $(dirname $r)); tar cJf $OUT/$n.tar.xz -C $r --exclude='cache.sqlite*' . ; done
nvidia-smi --query-gpu=name,utilization.gpu,memory.used,clocks.sm --format=csv; ls -la $OUT
