#!/bin/bash
# Issue 16 (session 6), call 2 of 2 (within 30 s of call 1): GGUF from both parts (sha256 checked),
# wait for the build, then on the same GGUF: benchmarks/bench_llama_bench_parity.py (llama-bench
# from that build vs the suite's bench, interleaved rounds, pp512/tg128, 5 repetitions) and the
# harness's hardware kind through llama.cpp's CUDA build in a worker process
# (benchmarks/gpu_runs/h16_llama_cuda*.yaml).
set -x
test -f /root/stash/a.part || { echo "COLD MACHINE: part A is missing"; exit 3; }
cat /root/stash/a.part .gpu2/b.part > /root/model.gguf
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  /root/model.gguf" | sha256sum -c || exit 4
set +x; for i in $(seq 1 ${WAIT:-100}); do test -f /root/build.done && break; sleep 3; done; set -x
cat /root/build.done; tail -3 /root/build.log; ls /root/lc/llama_cpp/lib | head -20
mkdir -p $OUT/run && cp /root/build.log $OUT/build.log
export PYTHONPATH=/tmp/site:/root/lc PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 SHAKTI_EVAL_CACHE=/root/cache
R=benchmarks/gpu_runs
# side by side, interleaved: llama-bench (its defaults: all layers on the GPU, flash attention auto)
# vs the suite's bench (a context per test, as llama-bench) vs the same bench on one pp+tg context
timeout ${TP:-240} python3 benchmarks/bench_llama_bench_parity.py --registry $R/h16_llama_cuda_models.yaml \
  --model h200-smollm2-q4-cuda-inline --llama-bench /root/lcb/bin/llama-bench --threads 16 --rounds ${ROUNDS:-3} \
  --single-context > $OUT/parity.txt 2>&1; echo "parity rc=$?"
grep -v "^llama_\|^load\|^print_info\|^ggml_\|^\.\|^ *$" $OUT/parity.txt | tail -25
test -n "$SKIP_SUITE" || timeout ${T:-300} python3 run_all.py --registry $R/h16_llama_cuda_models.yaml --model h200-smollm2-q4-cuda \
  --suite $R/h16_llama_cuda.yaml --output /root/res --reports /root/rep --no-progress 2>&1 | tail -15
D=$(ls -d /root/res/*/ 2>/dev/null | head -1); test -n "$D" && cp $D/run.json $D/results.json $OUT/run/ 2>/dev/null
