#!/usr/bin/env bash
# Issue 18, item 5: bfloat16 training throughput and generation on one accelerator, MFU against the chip's dense
# bf16 peak (train/flops.py's table). Run from the repository root on the lent machine (the `device` tool):
#
#   bash bench/accelerator.sh            # logs under $OUT (the tool's folder) or /tmp/accelerator
#
# Budget: about 8 minutes of device time (three compiled train steps, 10 timed steps each, generation, the cost
# of one cached any-subset call by rows: bench/assd_call_cost.py, the accelerator attention kernels (cudnn on
# NVIDIA, splash on TPU) against einsum/xla, and the compile-only report of ModernBERT-base for this device, whose
# roofline bound sits beside the measured base step), under the 10-minute limit of one call (the timeouts below
# add up to 590 s). The lent image has jax, flax, optax, orbax, torch and transformers but not
# grain, ml-collections, tensorboardX, portpicker, array-record or seqio: download their wheels here first (into .whl,
# ignored by git; the device README gives the pip download command) and carry `.whl`; this script installs
# whatever .whl holds. Shapes: ModernBERT-base and -large (batch x 512), the causal LM at GPT-2-medium shape
# (batch x 1024); BATCH (default 32) sets the batch of all three.
set -uo pipefail
OUT=${OUT:-/tmp/accelerator}
BATCH=${BATCH:-32}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>&1 | tee "$OUT/device.txt"
$PY -c "import jax, torch; print('jax', jax.__version__, jax.devices(), '| torch', torch.__version__)" \
  2>&1 | tee -a "$OUT/device.txt"
status=0
timeout 320 $PY -m bench.train_throughput --configs=base,large,gpt2_medium --dtype=bfloat16 --steps=10 \
  --batch_size="$BATCH" 2>&1 | tee "$OUT/train_throughput.txt" || status=1
timeout 110 $PY -m bench.generate_vs_hf --size=medium --torch_device=cuda --batches=1,8,32 --new_tokens=128 \
  --repeats=3 2>&1 | tee "$OUT/generate.txt" || status=1
# ASSD's premise on the device: what one cached AS-ARM call costs by rows (random weights, about a minute)
timeout 70 $PY -m bench.assd_call_cost --rounds=3 --dtype=bfloat16 2>&1 | tee "$OUT/assd_call_cost.txt" || status=1
# Accelerator attention kernels at ModernBERT's 8k shape (cudnn refused off NVIDIA, splash off TPU: reported)
KERNEL=$($PY -c "import jax; print('splash' if jax.default_backend() == 'tpu' else 'cudnn')")
timeout 40 $PY -m bench.attention_impl --dtype=bfloat16 --batch=1 --seq=8192 --heads=12 --head_dim=64 \
  --half_windows=64 --repeats=3 --extra="$KERNEL" 2>&1 | tee "$OUT/attention.txt" || status=1
# The compiler's memory, FLOPs and roofline bound for the base step measured above (same batch x 512, bfloat16)
timeout 50 $PY launch.py --config=configs/modernbert_mlm.py:base --mode=compile_only --config.data.vocab=byte \
  --config.model.dtype=bfloat16 --config.train.batch_size="$BATCH" 2>&1 | tee "$OUT/compile_only.txt" || status=1
exit $status
