#!/usr/bin/env bash
# One GPU session: the CUDA test rerun and the GPU benchmarks of issue 14, each bounded in time
# (about 8 minutes in all, so that a rerun fits in a 15-minute device budget).
# Usage (on a machine with a CUDA GPU, from the repository root): bash benchmarks/gpu_check.sh OUTDIR
set -u
OUT=${1:-${OUT:-/tmp/gpu_out}}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; date -u; } > "$OUT/gpu.txt" 2>&1
# the state-space tests (filter, joint E-step, smoother, EM, masks) and the moments on the GPU
TORCH_ISING_TEST_DEVICE=cuda timeout 170 python3 -m pytest -q -p no:cacheprovider \
  tests/statespace/test_joint.py tests/statespace/test_core.py tests/statespace/test_online.py \
  tests/statespace/test_fit.py tests/statespace/test_parity.py tests/statespace/test_mask.py \
  tests/test_moments.py tests/test_ising.py -k "not recovery and not batch_equals" > "$OUT/cuda_tests.txt" 2>&1
# issue 14's GPU rows: N = 20, T = 1000, R = 200; N = 26, T = 100; 256 data sets of N = 8, T = 50
timeout 150 python3 benchmarks/bench_estep.py --device cuda --N 20 26 --T 1000 100 > "$OUT/bench_estep_gpu.txt" 2>&1
timeout 60 python3 benchmarks/bench_estep.py --device cuda --batch 256 --N 8 --T 50 >> "$OUT/bench_estep_gpu.txt" 2>&1
timeout 40 python3 benchmarks/bench_moments.py --device cuda --N 20 24 28 --repeats 5 > "$OUT/bench_moments_gpu.txt" 2>&1
# an approximate fit at N = 200, T = 100, R = 200 (target: a whole fit in <= 5 min; bounded at 2.5 min here)
timeout 150 python3 benchmarks/bench_large_n.py --part scale --sizes 200 --device cuda --max-iter 30 \
  > "$OUT/bench_large_n_gpu.txt" 2>&1
tail -n 4 "$OUT"/*.txt
