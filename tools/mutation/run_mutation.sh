#!/usr/bin/env bash
# Mutation testing (mutmut 3) of genforge's sampling/, train/ and serve/ on a clone of the repo.
#
#   run_mutation.sh <clone-dir> <out-dir>
#
# Environment knobs:
#   BUDGET_S           wall-time budget of the `mutmut run` step (default 3900 s). Mutants run one at a time
#                      in a seeded random order that interleaves the three folders, so the mutants reached
#                      within the budget are a uniform random sample of each folder; the rest are reported
#                      as 'not reached'. 0 = no budget (a full run: ~4800 mutants, many hours here).
#   SAMPLE_PER_FOLDER  cap on the mutants considered per folder (0 = all; default 0)
#   SEED               RNG seed of the order (default 20261129): keep it, so a later run measures the same
#                      mutants first and before/after figures compare like with like
#   MUTMUT_VENV        venv with mutmut installed (default: a .venv-mutmut folder beside this script; created if missing,
#                      with --system-site-packages so it sees torch and the project's test extras)
#   TIMEOUT_MULT, TIMEOUT_CONST  per-mutant wall timeout = (estimated test time + CONST) * MULT
#                      (mutmut's CPU-time limit is twice that); defaults 6 and 30 s. The estimate counts only
#                      test call time, not fixture setup (the CLI tests' fixture trains in subprocesses for
#                      ~40 s), so a tighter limit turns slow survivors into false timeouts on a loaded machine.
#
# The clone is changed (a [tool.mutmut] section in its pyproject.toml, and a mutants/ folder); nothing
# else is. Everything runs under `nice -n 15` with one mutmut worker.
# Outputs in <out-dir>: estimates.txt, selected.txt, run.log, summary.txt/.json, survivors.txt, meta.txt
set -euo pipefail

CLONE=$(realpath "${1:?usage: run_mutation.sh <clone-dir> <out-dir>}")
OUT=$(realpath -m "${2:?usage: run_mutation.sh <clone-dir> <out-dir>}")
SAMPLE_PER_FOLDER=${SAMPLE_PER_FOLDER:-0}
SEED=${SEED:-20261129}
BUDGET_S=${BUDGET_S:-3900}
VENV=${MUTMUT_VENV:-$(dirname "$(realpath "$0")")/.venv-mutmut}
TIMEOUT_MULT=${TIMEOUT_MULT:-6.0}
TIMEOUT_CONST=${TIMEOUT_CONST:-30.0}
HERE=$(dirname "$(realpath "$0")")
NICE="nice -n 15"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1

mkdir -p "$OUT"
T0=$(date +%s)

if [ ! -x "$VENV/bin/mutmut" ]; then
  $NICE python -m venv --system-site-packages "$VENV"
  $NICE "$VENV/bin/pip" install -q 'mutmut>=3,<4'
fi
MUTMUT="$VENV/bin/mutmut"
PY="$VENV/bin/python"
# pytest plugin: lets uvicorn serve the (trampolined) Guard middleware, runs cheap test files first
cp "$HERE/mutmut_genforge_plugin.py" "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/"

cd "$CLONE"
{
  echo "clone: $CLONE"
  echo "commit: $(git rev-parse HEAD) ($(git log -1 --format='%cd %s' --date=iso))"
  echo "mutmut: $("$VENV/bin/pip" show mutmut | awk '/^Version/{print $2}')"
  echo "python: $("$PY" --version 2>&1); torch: $("$PY" -c 'import torch;print(torch.__version__)')"
  echo "budget_s: $BUDGET_S sample_per_folder: $SAMPLE_PER_FOLDER seed: $SEED timeout: (est+$TIMEOUT_CONST)*$TIMEOUT_MULT s wall"
  echo "started: $(date -Is)"
} > "$OUT/meta.txt"

# --- step 2: configure mutmut in the clone only --------------------------------------------------
# source_paths = all of src/ (so mutants/src/genforge is a complete package that shadows the
# installed one); only_mutate restricts mutation to the three folders.
# Excluded test files: the Playwright/Chromium studio tests and the benchmark smoke tests only
# drive genforge in subprocesses (which import the installed, non-mutated package, so they can
# never kill a mutant) and are the slowest tests; the benchmark smokes also need benchmarks/,
# which is not copied into mutants/. Other subprocess tests (test_cli, serve SIGTERM/schemathesis,
# torchrun) stay in the suite: mutmut only runs them for a mutant if they call the mutated function
# in-process, so in practice they only cost time in the one stats run.
if ! grep -q '^\[tool.mutmut\]' pyproject.toml; then
  cat >> pyproject.toml <<EOF

[tool.mutmut]
source_paths = ["src"]
only_mutate = ["src/genforge/sampling/*", "src/genforge/train/*", "src/genforge/serve/*"]
also_copy = ["configs", "benchmarks"]
pytest_add_cli_args_test_selection = ["tests/"]
# mutmut itself adds -x -q; the -m 'not slow and not gpu' default comes from [tool.pytest.ini_options]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "mutmut_genforge_plugin", "--ignore=tests/test_studio_browser.py", "--ignore=tests/test_benchmarks_smoke.py", "--ignore=tests/test_serve_bench_smoke.py", "--ignore=tests/test_report.py"]
process_isolation = "forkserver"
timeout_multiplier = $TIMEOUT_MULT
timeout_constant = $TIMEOUT_CONST
use_git_change_detection = false
EOF
fi

# --- step 3a: generate mutants and collect per-test coverage/timings (one full suite run) ---------
echo "[$(date +%T)] generating mutants + stats run" | tee -a "$OUT/run.log"
$NICE "$PY" "$HERE/mutation_report.py" generate > "$OUT/generate.log" 2>&1 || { tail -30 "$OUT/generate.log"; exit 1; }
$NICE "$PY" "$HERE/mutation_report.py" stats > "$OUT/estimates.raw" 2>&1 || { tail -50 "$OUT/estimates.raw"; exit 1; }
grep -aE '^(<no tests>|[0-9]+ms) ' "$OUT/estimates.raw" > "$OUT/estimates.txt" || true
echo "[$(date +%T)] $(wc -l < "$OUT/estimates.txt") mutants; stats done after $(( $(date +%s) - T0 )) s" | tee -a "$OUT/run.log"

# --- step 3b: the run order: all mutants (or SAMPLE_PER_FOLDER each), seeded random, folders interleaved ---
"$PY" "$HERE/mutation_report.py" select "$OUT/estimates.txt" "$SAMPLE_PER_FOLDER" "$SEED" > "$OUT/selected.txt"
echo "[$(date +%T)] running up to $(wc -l < "$OUT/selected.txt") mutants, budget ${BUDGET_S}s" | tee -a "$OUT/run.log"

# --- step 3c: mutmut run, one worker, in that order, stopped after BUDGET_S ------------------------------
# (includes mutmut's own clean-test and forced-fail runs, ~5 min on a loaded 2-core machine)
$NICE "$PY" "$HERE/mutation_report.py" run "$OUT/selected.txt" "$BUDGET_S" >> "$OUT/run.log" 2>&1 \
  || echo "mutmut run exited $?" >> "$OUT/run.log"
echo "[$(date +%T)] mutmut run done" | tee -a "$OUT/run.log"

# --- step 4: summary + survivors ----------------------------------------------------------------
T1=$(date +%s)
echo "wall_s: $(( T1 - T0 ))" >> "$OUT/meta.txt"
echo "finished: $(date -Is)" >> "$OUT/meta.txt"
$NICE "$PY" "$HERE/mutation_report.py" report "$OUT/selected.txt" "$OUT" "$(wc -l < "$OUT/estimates.txt")" > "$OUT/report.log" 2>&1 \
  || { tail -30 "$OUT/report.log"; exit 1; }
cat "$OUT/summary.txt"
