#!/usr/bin/env bash
# One prepared GPU run: train the bundled model, run the gpu-marked tests, measure throughput.
# Usage: OUT=outdir GENFORGE_HOME=dir-with-data/shakespeare.txt bash benchmarks/gpu_check.sh
set -uo pipefail
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
start=$(date +%s)
timeout 300 python3 -m genforge train configs/shakespeare-char.toml --train.progress=false \
  --train.out_dir=runs/shakespeare-char 2>&1 | tee "$OUT/train.log" | grep -v "^$" | tail -n 20
echo "train wall: $(( $(date +%s) - start )) s"
python3 -m genforge export runs/shakespeare-char "$OUT/shakespeare-char" --dtype fp16
cp runs/shakespeare-char/metrics.jsonl runs/shakespeare-char/loss.png "$OUT/" 2>/dev/null
python3 -m genforge generate --model "$OUT/shakespeare-char" --max-tokens 200 --seed 0 --device cuda
timeout 100 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tail -n 5
# writes $OUT/gpu_<card>.json with the machine record (card, CUDA, TF32 per row): copy it to benchmarks/results/
timeout 240 python3 benchmarks/gpu_throughput.py --out-dir "$OUT"
