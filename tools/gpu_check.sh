#!/usr/bin/env bash
# The GPU checks and benchmarks in one device call of at most 10 minutes (a session has 15 minutes of
# device time, the machine's start included). Prepare here first: bash tools/gpu_prepare.sh; then
#   run(command="bash tools/gpu_check.sh", carry=[".gpu"], timeout_s=600)
# What comes back in $OUT: BENCHMARKS.md with the re-measured sections, and a log per step. The
# device image has torch, Triton, onnx, onnxruntime, numba, tqdm, matplotlib and pytest; the rest
# comes from .gpu/whl. Steps are bounded so that one problem cannot take the whole call, most
# important first: the CUDA tests (Triton kernels, fused pooling, bf16), the speed table (issue 11:
# VGG-16 against SpikingJelly at fp32 and bf16), the GPU conversion time (issue 7: ≤ 10 s).
set -u
out=${OUT:-/tmp/gpu_out} shared=.gpu/shared data=.gpu/data
mkdir -p "$out" "$data"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
if [ -d .gpu/whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PWD"
fi
cp docs/BENCHMARKS.md "$out/BENCHMARKS.md"
nvidia-smi -L
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name(0))"
python3 "$shared/tools/datasets.py" mnist --out "$data" --calib 1000 >/dev/null
python3 "$shared/tools/datasets.py" cifar10 --out "$data" --calib 1000 >/dev/null
# 1. the CUDA tests, then the CPU kernel tests beside them
if ! timeout 120 python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda.py tests/test_cpu_kernel.py 2>&1 \
    | tee "$out/pytest.log" | tail -5; then
  echo "CUDA tests failed: benchmarks run without the Triton kernels"; export ONNX2SNN_NO_TRITON=1
fi
# 2. simulation speed against onnxruntime, the dense floor and SpikingJelly (fp32 and bf16)
timeout 240 python3 tools/benchmark_speed.py --data "$data" --shared "$shared" --device cuda --n 2000 --batch 500 \
  --out "$out/BENCHMARKS.md" 2>&1 | grep -v "it/s" | tee "$out/speed.log" | tail -12
# 3. conversion time on the GPU
timeout 150 python3 tools/benchmark_conversion.py --data "$data" --models "$shared/models" --device cuda --repeats 1 \
  --out "$out/BENCHMARKS.md" 2>&1 | tee "$out/conversion.log" | tail -6
# Not in this call (it would not fit): the low-latency tables on the full test sets, VGG-16's included. With
# device time left, a second call:
#   bash tools/gpu_prepare.sh  (once)  then  run(command="PYTHONPATH=/tmp/site:$PWD python3 tools/benchmark_low_latency.py
#     --data .gpu/data --shared-models .gpu/shared/models --models cifar_vgg16 --steps 16,32,64 --device cuda
#     --batch-size 500 --out $OUT/BENCHMARKS.md", carry=[".gpu"])  (after the same wheel install and datasets.py lines)
