#!/usr/bin/env bash
# Notebook 9's MNIST speedrun. Run it on a quiet machine (nothing else running): its figures are seconds.
# DATA: the data folder of results/run_all.sh (MNIST/ inside). THREADS: torch threads (default: all cores).
# Usage: bash results/run_speedrun.sh DATA [THREADS [SEEDS]]
#   1. the recipe chosen on the validation split (scripts/speedrun_search.py recipe; skipped when
#      results/speedrun-mnist/search-recipe.json exists: set the chosen settings as MnistRecipe's defaults);
#   1b. the learning rates of the runs without one-cycle or without BatchNorm, likewise
#      (scripts/speedrun_search.py rates -> search-rates.json; set them in TRICKS);
#   2. the recipe with SEEDS seeds (default 3), each recorded in results/speedrun-mnist/recipe-s<seed>/;
#   3. each trick of cnncourse.speedrun.TRICKS removed, one at a time, with the same seeds:
#      results/speedrun-mnist/without-<trick>-s<seed>/.
# Runs already recorded (metrics.json present) are skipped. Each run gets an empty torch.compile cache, so
# the run with torch.compile pays its whole compilation, as a first run does.
set -euo pipefail
data=${1:?usage: bash results/run_speedrun.sh DATA_FOLDER [THREADS [SEEDS]]}
threads=${2:-$(nproc)}
seeds=${3:-3}
cd "$(dirname "$0")/.."
out=results/speedrun-mnist
python=${PYTHON:-python}
[ -f $out/search-recipe.json ] || $python scripts/speedrun_search.py recipe --threads "$threads" --data-root "$data" --out $out
[ -f $out/search-rates.json ] || $python scripts/speedrun_search.py rates --threads "$threads" --data-root "$data" --out $out
$python scripts/speedrun_search.py check --out $out   # stops unless the code's defaults are the chosen ones
run() {  # run NAME [cnncourse speedrun options...]
  local name=$1; shift
  [ -f "$out/$name/metrics.json" ] && { echo "recorded: $name"; return; }
  echo "running: $name"
  local cache
  cache=$(mktemp -d)
  TORCHINDUCTOR_CACHE_DIR=$cache $python -m cnncourse speedrun "$@" --threads "$threads" --data-root "$data" \
    --out "$out/$name" --no-progress
  rm -rf "$cache"
}
for seed in $(seq 0 $((seeds - 1))); do
  run "recipe-s$seed" --seed "$seed"
done
$python -c "from cnncourse.speedrun import TRICKS; print('\n'.join(TRICKS))" | while read -r trick; do
  slug=$(echo "$trick" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9\n' '-')
  for seed in $(seq 0 $((seeds - 1))); do
    run "without-$slug-s$seed" --without "$trick" --seed "$seed"
  done
done
