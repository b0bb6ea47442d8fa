#!/bin/bash
# Start the llama-cpp-python CUDA build (sources unpacked in /root/lc) in its own session, so it
# outlives the call that starts it; it writes /root/wheel/*.whl, /root/build.log, /root/build.done.
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
