#!/usr/bin/env bash
# Every check that needs a GPU, as one script for a CUDA machine (CI never has one); estimated under 10 minutes
# on an H100 (not yet measured):
#   bash benchmarks/gpu_checks.sh [OUT]     # OUT: where logs and the Snakemake study go (default gpu-checks/)
# 1. the tests marked for CUDA; 2. the training-epoch and stacking benchmarks (paper shapes, FP32 and TF32,
# and the drift of stacked from solo members after 1, 10, 100 epochs); 3. three epochs of
# configs/cifar10-paper.yaml through Snakemake on synthetic CIFAR-10 (random pixels, full size, on-disk format).
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-gpu-checks}" && cd "${1:-gpu-checks}" && pwd)
cd "$repo"
step() { echo "== $1"; shift; ( time "$@" ) > "$out/$1.log" 2>&1; echo "   rc=$? ($out/$1.log)"; tail -n 8 "$out/$1.log"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
step cuda-tests python -m pytest -q -rs tests -k cuda
step train-epoch python benchmarks/train_epoch.py --n 50000 --device cuda
step stacking-fp32 python benchmarks/stacking.py --paper --device cuda
step stacking-tf32 python benchmarks/stacking.py --paper --device cuda --tf32
step stacking-bits python benchmarks/stacking.py --bits --device cuda --widths 512 --n 10000
python - "$out/study/data/cifar10" <<'PY'
import sys
sys.path.insert(0, "tests")
from cifar_fixture import write_cifar10_fixture
write_cifar10_fixture(sys.argv[1] + "/cifar-10-batches-py", n_per_batch=10000)  # 50 000 training and 10 000 test images
PY
cat > "$out/study/gpu.yaml" <<YAML
study: cifar10-paper-gpu-check
dataset: {data_dir: $out/study/data/cifar10}
train: {epochs: 3, checkpoint_every: 1}
record: {epochs: {first: 2, log_count: 2}}
YAML
step snakemake-cifar10-paper snakemake -s "$repo/Snakefile" -d "$out/study" --cores all \
    --configfile configs/cifar10-paper.yaml "$out/study/gpu.yaml" --until train
