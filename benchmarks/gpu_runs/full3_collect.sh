#!/bin/bash
# Full-suite call 2/3 on the H200: wait (at most $1 seconds) for the background runs, then pack
# what they have written (request caches left out) and their logs into $OUT.
limit=${1:-540}; start=$(date +%s)
while [ $(( $(date +%s) - start )) -lt $limit ]; do
  ls /root/hf_academic.done /root/hf_responsible_ai.done >/dev/null 2>&1 && break; sleep 10
done
for j in hf_academic hf_responsible_ai; do
  echo "== $j: $(cat /root/$j.done 2>/dev/null || echo running)"; grep -E "done in|skipped|error|Traceback" /root/$j.log | tail -12 | cut -c1-300
done
nvidia-smi --query-gpu=name,utilization.gpu,memory.used --format=csv
cd /root/res && tar czf $OUT/hf_full.tgz --exclude='cache.sqlite*' .
cp /root/hf_*.log $OUT/; ls -la $OUT
