#!/bin/bash
# Issue 16, call 4 (within 30 s of call 3): GGUF from both parts, dequantized into /root/hf, then
# the full academic suite through the transformers adapter under timed_run.py (in-process: wall,
# scoring seconds and NVML utilisation/memory per task): fp32, fp32 with TF32 products, bf16;
# then the comparisons with the stored 994 s run and, item by item, with the fp32 run.
set -x
test -f /root/stash/b.part || { echo "COLD MACHINE: part B is missing"; exit 3; }
cat .gpu2/a.part /root/stash/b.part > /root/model.gguf
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  /root/model.gguf" | sha256sum -c || exit 4
mkdir -p /root/data /root/res && tar xJf .gpu2/data.tar.xz -C /root/data
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=true
export SHAKTI_EVAL_DATA=/root/data SHAKTI_EVAL_CACHE=/root/cache
python3 -c "from pathlib import Path; from harness.backends.transformers import _convert_weights; _convert_weights(Path('/root/model.gguf'), Path('/root/hf'))" 2>&1 | tail -1
cp .gpu2/hfmeta/* /root/hf/
R=benchmarks/gpu_runs
run() {  # name model timeout [env]
  env $4 timeout $3 python3 $R/timed_run.py $OUT/timed_$1.json -- --model $2 --registry $R/h16_models.yaml \
    --suite academic --profile full --output /root/res/$1 --no-progress 2>&1 | grep -v "Warning\|warn(\|it/s\]" | tail -14
}
run fp32 h200-smollm2-fp32 ${T1:-170}
run tf32 h200-smollm2-fp32 ${T2:-150} SHAKTI_EVAL_TF32=1
run bf16 h200-smollm2-bf16 ${T3:-140}
A=$(ls -d /root/res/fp32/*/ | head -1)
mkdir -p /root/pack
for n in fp32 tf32 bf16; do
  B=$(ls -d /root/res/$n/*/ | head -1); test -n "$B" || continue
  python3 $R/compare_runs.py $R/h200-20261128-220112-academic-full $B $A > /root/pack/compare_$n.txt 2>&1; tail -11 /root/pack/compare_$n.txt
  mkdir -p /root/pack/run_$n && cp $B/results.json $B/run.json /root/pack/run_$n/
done
cp $OUT/timed_*.json /root/pack/ 2>/dev/null; rm -f $OUT/timed_*.json
tar cJf $OUT/h16_call4.tar.xz -C /root/pack .
ls -la $OUT
