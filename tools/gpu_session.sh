#!/usr/bin/env bash
# Everything chapter 07 needs from a CUDA machine, in one run of under 8 minutes:
#
#   1. pytest tests -m gpu     bn_lib's parity tests and bn_triton's kernels on CUDA
#   2. make verify-gpu         the recorded re-verification (python -m tools.verify)
#   3. benchmarks.bench_triton fused, composed, compiled and Triton BN, fractions of copy
#
# Usage, from the repository root:  OUT=/some/dir bash tools/gpu_session.sh
# It needs only python3 with torch, triton, numpy and pytest (no .venv, nothing
# installed: the repository goes on PYTHONPATH). Each step has its own time limit, so a
# slow step cannot take the others' time, and writes into $OUT as it goes:
#   session.log (everything printed), verification_cuda.{json,md}, triton_cuda.{json,md}.
# Commit the four reports under reports/ and re-execute chapter 07.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-450}  # the whole session; the steps' limits below add up to it
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
LOG="$OUT/session.log"
start=$(date +%s)
status=0

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log it, remember failures
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET_S - ($(date +%s) - start)))
  ((limit > left)) && limit=$left
  echo "=== $name (limit ${limit} s, $(($(date +%s) - start)) s into the session)" | tee -a "$LOG"
  if ((limit < 10)); then
    echo "=== $name skipped: no time left" | tee -a "$LOG"
    status=1
    return
  fi
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit status $rc after $(($(date +%s) - start)) s" | tee -a "$LOG"
  ((rc != 0)) && status=1
}

{
  echo "=== environment"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem \
    --format=csv 2>&1
  "$PY" -c "import sys, torch, triton, numpy; print('python', sys.version.split()[0],
'| torch', torch.__version__, 'cuda', torch.version.cuda, '| triton', triton.__version__,
'| numpy', numpy.__version__, '| cuda available', torch.cuda.is_available())" 2>&1
} | tee -a "$LOG"

# four workers where pytest-xdist is there: most of this step is Triton compiling kernels,
# one CPU core each
workers=()
"$PY" -c "import xdist" 2>/dev/null && workers=(-n 4)
step "pytest -m gpu" 120 "$PY" -m pytest tests -m gpu -q -rs -p no:cacheprovider "${workers[@]}"
if command -v make >/dev/null; then
  step "make verify-gpu" 170 make verify-gpu VERIFY_PYTHON="$PY"
else  # the Makefile's verify-gpu command itself
  step "verify-gpu (no make here)" 170 "$PY" -m tools.verify --device cuda --bandwidth \
    --report 'reports/verification_{device}'
fi
cp reports/verification_cuda.json reports/verification_cuda.md "$OUT"/ 2>>"$LOG" \
  || { echo "no reports/verification_cuda.*: see the log above" | tee -a "$LOG"; status=1; }
# the benchmark checks its time itself: compile and variants stop after --budget-s
bench_left=$((BUDGET_S - ($(date +%s) - start)))
step "bench_triton" "$bench_left" "$PY" -m benchmarks.bench_triton --device cuda \
  --variants --budget-s $((bench_left * 2 / 3)) --report "$OUT/triton_{device}"

echo "=== session done in $(($(date +%s) - start)) s, status $status" | tee -a "$LOG"
ls -l "$OUT" | tee -a "$LOG"
exit $status
