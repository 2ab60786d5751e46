#!/usr/bin/env bash
# Execute one chapter at `default` as the AVX2-only EPYC would (no AVX-512, no native bf16), on a machine
# that has more: for checking a rule on that variant before CI meets it. Executed copy and metrics go to
# /tmp/avx2/ (its own model cache too), never to _build or data/cache.
#   tools/as_avx2.sh 07f_capfilt      -> /tmp/avx2/07f_capfilt.ipynb, /tmp/avx2/metrics/default/07f_capfilt.json
# Measured in 2026-12: runs of 7f and 7j this way recorded the same numbers, to the last digit, as the real
# AVX2 machine's build (capfilt_gain -0.017, vilt_reference_vqa_accuracy 0.297).
set -euo pipefail
stem=${1:?usage: tools/as_avx2.sh CHAPTER_STEM (e.g. 07f_capfilt)}
root=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$root/chapters/$stem.ipynb" ] || { echo "no chapter named $stem in $root/chapters" >&2; exit 2; }
out=/tmp/avx2
mkdir -p "$out/metrics" "$out/cache"
export PYTHONPATH="$root/tools/avx2${PYTHONPATH:+:$PYTHONPATH}"
export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
export VNOTES_CACHE_DIR="$out/cache" VNOTES_METRICS_DIR="$out/metrics"
export VNOTES_SCALE=default OMP_NUM_THREADS=1 VNOTES_PROGRESS=0
cd "$root"
"$root/.venv/bin/papermill" --log-level WARNING "chapters/$stem.ipynb" "$out/$stem.ipynb"
