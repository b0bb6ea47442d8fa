#!/bin/bash
# Issue 16 (session 6), call 1 of 2 on the H200: stash GGUF part A, install the carried wheels
# (pydantic and its three dependencies, gguf, diskcache), and start building llama.cpp 0.3.36's
# vendored source (llama-cpp-python's own, trimmed of docs, models, tests and unused backends;
# .gpu/lc.tar.xz) once, with the flags llama-cpp-python's CUDA build uses: shared libllama/ggml
# (for the Python bindings) and llama-bench from the same build. The build runs in its own session
# so it outlives this call; it writes /root/build.done.
set -x
mkdir -p /root/stash /tmp/site && cp .gpu/a.part /root/stash/a.part
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl
rm -rf /root/lc && tar xJf .gpu/lc.tar.xz -C /root
nvidia-smi --query-gpu=name,driver_version --format=csv; which nvcc cmake ninja; nvcc --version | tail -2
cat > /root/build.sh <<'EOS'
start=$(date +%s)
cmake -S /root/lc/llama.cpp -B /root/lcb -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
  -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_FA=OFF -DGGML_NATIVE=ON \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_OPENSSL=OFF > /root/build.log 2>&1 &&
cmake --build /root/lcb -j16 --target llama llama-bench mtmd >> /root/build.log 2>&1
rc=$?
mkdir -p /root/lc/llama_cpp/lib && find /root/lcb -name "*.so*" -exec cp -a {} /root/lc/llama_cpp/lib/ \;
echo "rc=$rc seconds=$(( $(date +%s) - start ))" > /root/build.done
EOS
setsid nohup bash /root/build.sh > /dev/null 2>&1 < /dev/null &
sleep 20; tail -3 /root/build.log
