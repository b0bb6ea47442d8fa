#!/bin/bash
# Issue 16 (session 7), call 2 of 2 (within 30 s of call 1): GGUF from both parts (sha256
# checked), dequantized into /root/hf; the hardware suite through the transformers adapter on the
# GPU (h16_tf_hardware.yaml); then the full academic suite at fp32 and at fp32 with TF32 products
# under timed_run.py, metrics against the stored 994 s run and TF32's choices item by item
# against the fp32 run's (compare_runs.py, on the machine: the samples stay there).
set -x
test -f /root/stash/a.part || { echo "COLD MACHINE: part A is missing"; exit 3; }
cat /root/stash/a.part .gpu2/b.part > /root/model.gguf
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  /root/model.gguf" | sha256sum -c || exit 4
mkdir -p /root/data /root/res /root/pack && tar xJf .gpu2/data.tar.xz -C /root/data
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=true
export SHAKTI_EVAL_DATA=/root/data SHAKTI_EVAL_CACHE=/root/cache
python3 -c "from pathlib import Path; from harness.backends.transformers import _convert_weights; _convert_weights(Path('/root/model.gguf'), Path('/root/hf'))" 2>&1 | tail -1
cp .gpu2/hfmeta/* /root/hf/
R=benchmarks/gpu_runs
test -n "$SKIP_HW" || { timeout ${TH:-200} python3 run_all.py --registry $R/h16_models.yaml --model h200-smollm2-bf16 \
  --suite $R/h16_tf_hardware.yaml --output /root/res/hw --reports /root/rep --no-progress 2>&1 | grep -v "Warning\|warn(" | tail -12
  D=$(ls -d /root/res/hw/*/ | head -1); mkdir -p /root/pack/hw && cp $D/run.json $D/results.json /root/pack/hw/
  python3 -c "
import json,sys; r=json.load(open('$D/results.json'))
for t,v in r.get('results',{}).items(): print(t, {k: v[k] for k in v if 'tg' in k or 'pp' in k})" 2>&1 | head; }
run() {  # name model timeout [env]
  env $4 timeout $3 python3 $R/timed_run.py /root/pack/timed_$1.json -- --model $2 --registry $R/h16_models.yaml \
    --suite academic --profile full --output /root/res/$1 --no-progress 2>&1 | grep -v "Warning\|warn(\|it/s\]" | tail -12
}
run fp32 h200-smollm2-fp32 ${T1:-190}
run tf32 h200-smollm2-tf32 ${T2:-150}
A=$(ls -d /root/res/fp32/*/ | head -1)
for n in fp32 tf32; do
  B=$(ls -d /root/res/$n/*/ | head -1); test -n "$B" || continue
  python3 $R/compare_runs.py $R/h200-20261128-220112-academic-full $B $A > /root/pack/compare_$n.txt 2>&1; tail -11 /root/pack/compare_$n.txt
  mkdir -p /root/pack/run_$n && cp $B/results.json $B/run.json /root/pack/run_$n/
done
tar cJf $OUT/h16_s7_call2.tar.xz -C /root/pack .
ls -la $OUT
