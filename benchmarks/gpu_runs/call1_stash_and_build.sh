#!/bin/bash
# Call 1 on the H200: stash model part A, install carried wheels, start the llama.cpp CUDA build in its own session.
set -x
mkdir -p /root/stash && cp .gpu/a.part /root/stash/a.part
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
mkdir -p /root/lc && tar xzf .gpu/llama_trim.tar.gz -C /root/lc
CUDA_HOME=$(dirname $(dirname $(readlink -f $(which nvcc || echo /usr/local/cuda/bin/nvcc))))
echo "CUDA_HOME=$CUDA_HOME"
cat > /root/build.sh <<EOS
cd /root/lc
export PATH=$CUDA_HOME/bin:\$PATH CUDACXX=$CUDA_HOME/bin/nvcc
export CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAVA_BUILD=off -DGGML_CUDA_FA=off -DGGML_NATIVE=on"
export CMAKE_BUILD_PARALLEL_LEVEL=16
start=\$(date +%s)
python3 -m pip wheel -v --no-deps --no-build-isolation -w /root/wheel . > /root/build.log 2>&1
echo "rc=\$? seconds=\$(( \$(date +%s) - start ))" > /root/build.done
EOS
setsid nohup bash /root/build.sh > /dev/null 2>&1 < /dev/null &
echo $! > /root/build.pid
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import sys, torch, transformers; print(sys.version.split()[0], torch.__version__, torch.version.cuda, transformers.__version__, torch.cuda.get_device_name(0))"
PYTHONPATH=/tmp/site python3 -c "import pydantic, gguf, yaml, jinja2, matplotlib, pynvml; print('pydantic', pydantic.VERSION, 'gguf ok')"
nproc; free -g | head -2; python3 -m pip show scikit-build-core cmake ninja 2>/dev/null | grep -E "^(Name|Version)"
sleep 5; tail -3 /root/build.log; ls /root/stash -la
