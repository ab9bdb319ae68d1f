#!/usr/bin/env bash
# GPU readiness (issue 15): training s/step, cells/s and peak GPU memory at the paper's Replogle size for both
# guides, the step time of a tiny problem with the same program (the Python and Pyro floor of a step), then
# the IWELBO and model-ATE timings of bench_evaluate.py, all on CUDA.
# Usage (repository root, on a machine with a GPU):  bash benchmarks/gpu.sh [STEPS]
set -euo pipefail
STEPS=${1:-100}
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('device:', torch.cuda.get_device_name(0))"
python benchmarks/bench_train.py --device cuda --no-reference --steps "$STEPS" --threads 1
python benchmarks/bench_overhead.py --what time --device cuda --steps "$STEPS" --threads 1
for guide in correlated mean_field; do
  python benchmarks/bench_evaluate.py --device cuda --guide "$guide" --threads 1 --iwelbo-batch 512
done
