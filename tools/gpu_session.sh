#!/usr/bin/env bash
# Everything chapter 07 needs from a CUDA machine, in one run of under 7 minutes:
#
#   1. pytest -m gpu    bn_lib's parity tests and bn_triton's kernels on CUDA, from the
#                       test files selected in GPU_TESTS below, and only those
#   2. tools.verify     the recorded re-verification, as `make verify-gpu` runs it
#   3. bench_triton     fused, composed, compiled and Triton BN, as fractions of copy
#
# Usage, from the repository root:
#   OUT=/some/dir bash tools/gpu_session.sh               on a CUDA machine
#   DEVICE=cpu OUT=/some/dir bash tools/gpu_session.sh    dry run: every step on the CPU,
#                       Triton in its interpreter on a tiny shape (about a minute)
#   bash tools/gpu_session.sh --list-tests                the test files of step 1
# It needs only python3 with torch, triton, numpy and pytest (pytest-xdist if there): no
# .venv, nothing installed; the repository goes on PYTHONPATH. tests/test_gpu_session.py
# runs the dry run with every other package hidden, so the script cannot come to need one.
# Each step has its own time limit, so a slow step cannot take the others' time, and
# writes into $OUT as it goes: session.log (everything printed),
# verification_<device>.{json,md} and triton_<device>.{json,md}.
# After a GPU run, commit the four reports under reports/ and re-execute chapter 07.
set -u
cd "$(dirname "$0")/.."

# The test files that hold `gpu` tests, and only they are collected: the others may import
# packages the GPU machine lacks (nbformat, sphinx). They are the files that compare with
# PyTorch (named *_torch.py, as tests/conftest.py says), the oracle's own tests and the
# Triton kernels' tests; tests/test_gpu_session.py checks that every file where
# `pytest -m gpu` finds a test is among them.
GPU_TESTS=()
for file in tests/test_*_torch.py tests/test_testing.py tests/test_triton_bn.py; do
  [[ -f $file ]] && GPU_TESTS+=("$file")
done
if [[ ${1:-} == --list-tests ]]; then
  printf '%s\n' "${GPU_TESTS[@]}"
  exit 0
fi

DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
OUT=${OUT:-_build/gpu_session_$DEVICE}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
case $DEVICE in
  cuda)
    # the whole session; the steps' limits below add up to it, with 5 s to kill each
    BUDGET_S=${BUDGET_S:-400}
    limits=(110 160)  # pytest, verify; the benchmark gets what is left
    # past 60 s of bandwidth measurement, torch.compile (seconds per graph) stops
    verify_args=(--device cuda --require-device --bandwidth --budget-s 60)
    bench_args=(--device cuda --variants)
    # parallel workers where pytest-xdist is there: most of step 1 is Triton compiling
    # kernels, one CPU core each
    workers=()
    "$PY" -c "import xdist" 2>/dev/null && workers=(-n 8)
    ;;
  cpu)
    BUDGET_S=${BUDGET_S:-240}
    limits=(60 60)
    export TRITON_INTERPRET=1  # the kernels run as NumPy code on CPU tensors
    verify_args=(--device cpu --quick --bandwidth)
    bench_args=(--device cpu --shapes 4x4x3x3 --dtypes float32 bfloat16 --variants)
    workers=()
    ;;
  *)
    echo "DEVICE must be cuda or cpu, got '$DEVICE'" >&2
    exit 2
    ;;
esac
mkdir -p "$OUT"
LOG="$OUT/session.log"
: >"$LOG"
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
  timeout --kill-after=5 "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit status $rc after $(($(date +%s) - start)) s" | tee -a "$LOG"
  ((rc != 0)) && status=1
}

echo "=== environment (DEVICE=$DEVICE)" | tee -a "$LOG"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem \
    --format=csv 2>&1 | tee -a "$LOG"
fi
"$PY" -c "import sys, torch, triton, numpy; print('python', sys.version.split()[0],
'| torch', torch.__version__, 'cuda', torch.version.cuda, '| triton', triton.__version__,
'| numpy', numpy.__version__, '| cuda available', torch.cuda.is_available())
sys.exit('$DEVICE' == 'cuda' and not torch.cuda.is_available())" 2>&1 | tee -a "$LOG"
if ((PIPESTATUS[0] != 0)); then
  echo "=== stopped: PyTorch, Triton or NumPy is missing, or CUDA is not available" \
    | tee -a "$LOG"
  exit 2
fi

step "pytest -m gpu" "${limits[0]}" "$PY" -m pytest "${GPU_TESTS[@]}" -m gpu -q -rs \
  -p no:cacheprovider "${workers[@]}"
# the command of `make verify-gpu`, with the report written straight into $OUT
step "verify" "${limits[1]}" "$PY" -m tools.verify "${verify_args[@]}" \
  --report "$OUT/verification_{device}"
# the benchmark checks its time itself: compile and variants stop after --budget-s
bench_left=$((BUDGET_S - ($(date +%s) - start)))
step "bench_triton" "$bench_left" "$PY" -m benchmarks.bench_triton "${bench_args[@]}" \
  --budget-s $((bench_left * 2 / 3)) --report "$OUT/triton_{device}"

echo "=== session done in $(($(date +%s) - start)) s, status $status" | tee -a "$LOG"
ls -l "$OUT" | tee -a "$LOG"
exit $status
