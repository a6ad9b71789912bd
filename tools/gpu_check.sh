#!/usr/bin/env bash
# The GPU checks and benchmarks in one run (how docs/BENCHMARKS.md's GPU numbers were made):
#   bash tools/gpu_check.sh SHARED_DIR DATA_DIR OUT_DIR
# SHARED_DIR: ../shared (models/, tools/); DATA_DIR: arrays written by ../shared/tools/datasets.py
# (mnist --calib 500, cifar10 --calib 1000). Needs torch with CUDA, onnx, onnxruntime,
# onnx-graphsurgeon, tqdm, numba, pytest; spikingjelly==2.0.0 for the speed comparison.
set -u
shared=$1 data=$2 out=$3
mkdir -p "$out"
cp docs/BENCHMARKS.md "$out/BENCHMARKS.md"
nvidia-smi -L
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
# 1. the CUDA tests (Triton kernel vs the torch loop, CUDA vs CPU simulation, bf16), then the rest
if ! timeout 150 python3 -m pytest -q -x tests/test_cuda.py tests/test_snn.py tests/test_patterns.py 2>&1 | tee "$out/pytest.log" | tail -5; then
  echo "CUDA tests failed: benchmarks run without the Triton kernel"; export ONNX2SNN_NO_TRITON=1
fi
# 2. benchmarks, each bounded so one problem cannot take the whole run
#    low latency (issue 7) on the full test sets first: the project's headline numbers
timeout 240 python3 tools/benchmark_low_latency.py --data "$data" --shared-models "$shared/models" --models mnist_cnn,cifar_resnet20,cifar_vgg16 --steps 16,32,64,128 --device cuda --batch-size 500 --out "$out/BENCHMARKS.md" 2>&1 | tee "$out/low_latency.log" | tail -3
timeout 200 python3 tools/benchmark_cifar.py --data "$data" --models "$shared/models" --device cuda --out "$out/BENCHMARKS.md" 2>&1 | grep -v "it/s" | tee "$out/cifar.log" | tail -3
timeout 100 python3 tools/benchmark_fixtures.py --data "$data" --device cuda --out "$out/BENCHMARKS.md" 2>&1 | tee "$out/fixtures.log" | tail -2
timeout 280 python3 tools/benchmark_speed.py --data "$data" --shared "$shared" --device cuda --n 5000 --batch 500 --out "$out/BENCHMARKS.md" 2>&1 | grep -v "it/s" | tee "$out/speed.log" | tail -12
