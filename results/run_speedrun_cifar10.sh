#!/usr/bin/env bash
# Notebook 9's CIFAR-10 speedrun on a CPU (cnncourse.cifar_speedrun). Its figures are seconds: run the
# recipe and removal parts on a quiet machine (nothing else running); the search may share the machine.
# DATA: the data folder of results/run_all.sh (cifar10-jpeg/ or CIFAR-10's own files inside).
# Usage: bash results/run_speedrun_cifar10.sh DATA PART [THREADS [SEEDS]]
#   PART search:  the recipe for 8, 10, 12, 14 and 16 epochs, trained on 45,000 images and scored on the
#                 5,000 held out (--val-fraction 0.1): results/speedrun-cifar10/search/e<N>-s0/;
#   PART recipe:  the chosen recipe on all 50,000 images, SEEDS seeds (default 3), scored once on test:
#                 results/speedrun-cifar10/recipe-s<seed>/;
#   PART without: each trick of cnncourse.cifar_speedrun.TRICKS removed, one at a time, with the same seeds:
#                 results/speedrun-cifar10/without-<trick>-s<seed>/ (SEEDS=1 for the speed-only tricks).
# Runs already recorded (metrics.json present) are skipped, so the script resumes where it stopped.
# ONLY: for PART without, the removals to run, as folder names without "without-" and the seed
#   (e.g. ONLY="whitening lookahead"): seeds 1-2 of the accuracy pieces without rerunning the speed-only ones.
# DATASET: what --data names inside DATA (default cifar10-jpeg, the JPEG copy; "cifar10" for the real files).
set -euo pipefail
data=${1:?usage: bash results/run_speedrun_cifar10.sh DATA_FOLDER PART [THREADS [SEEDS]]}
part=${2:?PART: search, recipe or without}
threads=${3:-$(nproc)}
seeds=${4:-3}
dataset=${DATASET:-cifar10-jpeg}
cd "$(dirname "$0")/.."
out=results/speedrun-cifar10
python=${PYTHON:-python}
run() {  # run NAME [cnncourse speedrun options...]
  local name=$1; shift
  [ -f "$out/$name/metrics.json" ] && { echo "recorded: $name"; return; }
  echo "running: $name"
  rm -rf "$out/$name"
  $python -m cnncourse speedrun --task cifar10 --data "$dataset" "$@" --threads "$threads" --data-root "$data" \
    --out "$out/$name" --no-progress
}
epochs_flag() {  # the recipe's epochs: the code's default unless search-choice.json sets them
  $python -c "import json, pathlib; p = pathlib.Path('$out/search-choice.json'); \
print('--epochs %s' % json.loads(p.read_text())['epochs'] if p.exists() else '')"
}
case $part in
  search)
    for epochs in ${EPOCHS:-8 10 12 14 16}; do
      run "search/e$epochs-s0" --epochs "$epochs" --val-fraction 0.1 --seed 0
    done ;;
  recipe)
    for seed in $(seq 0 $((seeds - 1))); do
      # shellcheck disable=SC2046
      run "recipe-s$seed" --seed "$seed" $(epochs_flag)
    done ;;
  without)
    $python -c "from cnncourse.cifar_speedrun import TRICKS; print('\n'.join(TRICKS))" | while read -r trick; do
      slug=$(echo "$trick" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9\n' '-')
      if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $slug "* ]]; then continue; fi
      for seed in $(seq 0 $((seeds - 1))); do
        # shellcheck disable=SC2046
        run "without-$slug-s$seed" --without "$trick" --seed "$seed" $(epochs_flag)
      done
    done ;;
  *) echo "PART must be search, recipe or without" >&2; exit 2 ;;
esac
