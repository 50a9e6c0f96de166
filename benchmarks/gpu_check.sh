#!/usr/bin/env bash
# One GPU session: the CUDA test rerun and the GPU benchmarks, each bounded in time.
# Usage (on a machine with a CUDA GPU, from the repository root): bash benchmarks/gpu_check.sh OUTDIR
set -u
OUT=${1:-${OUT:-/tmp/gpu_out}}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; date -u; } > "$OUT/gpu.txt" 2>&1
TORCH_ISING_TEST_DEVICE=cuda timeout 200 python3 -m pytest -q -p no:cacheprovider \
  tests/test_moments.py tests/test_ising.py tests/statespace/test_fit.py tests/statespace/test_core.py \
  tests/test_thermodynamics.py -k "not recovery and not batch_equals" > "$OUT/cuda_tests.txt" 2>&1
timeout 100 python3 benchmarks/bench_moments.py --device cuda --N 20 22 24 26 28 30 --repeats 5 > "$OUT/bench_moments_gpu.txt" 2>&1
timeout 150 python3 benchmarks/bench_estep.py --device cuda --N 20 26 --T 100 50 > "$OUT/bench_estep_gpu.txt" 2>&1
timeout 60 python3 benchmarks/bench_estep.py --device cuda --batch 64 --N 10 --T 50 >> "$OUT/bench_estep_gpu.txt" 2>&1
timeout 120 python3 benchmarks/bench_large_n.py --part scale --sizes 200 --device cuda --max-iter 30 > "$OUT/bench_large_n_gpu.txt" 2>&1
timeout 40 python3 benchmarks/bench_thermodynamics.py --device cuda > "$OUT/bench_thermo_gpu.txt" 2>&1
tail -n 3 "$OUT"/*.txt
