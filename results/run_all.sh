#!/usr/bin/env bash
# Re-runs every reference experiment of README's results table, one after another.
# DATA: a data folder holding MNIST/ and FashionMNIST/ in torchvision's layout and the CIFAR-10
# JPEG copy in cifar10-jpeg/{train,test}/<class>/ (see README, Data). Usage: bash results/run_all.sh DATA
# Each run uses one thread (THREADS=2 to change): two of them ran side by side on a 2-core machine;
# the article's ResNet-50 on Fashion-MNIST ran alone with THREADS=2.
# The GPU rows of README's table (the *-gpu entries of experiments.json) have no line here yet: no GPU was lent.
# bf16 autocast speeds ResNet-20 up about 1.5x on CPUs with native bf16 (AVX-512 BF16); drop --amp bf16 elsewhere.
set -euo pipefail
data=${1:?usage: bash results/run_all.sh DATA_FOLDER}
cd "$(dirname "$0")/.."
# A folder that holds a recorded run is refused (cnncourse train never overwrites a run): OVERWRITE=1 replaces them.
run() { name=$1; shift; cnncourse train "$@" --threads "${THREADS:-1}" ${OVERWRITE:+--overwrite} --out "results/$name" --no-progress && rm -f "results/$name/checkpoint.pt"; }

run mnist-resnet20 --model resnet20 --data mnist --data-root "$data" --epochs 3 --batch-size 128 \
    --optimizer adamw --lr 3e-3 --weight-decay 0.05 --schedule onecycle --augment --channels-last
run fmnist-resnet20 --model resnet20 --data fashion-mnist --data-root "$data" --epochs 15 --batch-size 128 \
    --optimizer sgd --lr 0.1 --weight-decay 5e-4 --schedule onecycle --label-smoothing 0.1 --augment --channels-last --amp bf16
run cifar10-lenet-article --model lenet --data cifar10-jpeg --data-root "$data" --epochs 10 --batch-size 64 \
    --optimizer adam --lr 0.01
run cifar10-lenet-improved --model lenet --data cifar10-jpeg --data-root "$data" --epochs 10 --batch-size 64 \
    --optimizer adamw --lr 3e-3 --weight-decay 0.05 --schedule onecycle
run galaxy10-vgg16-quick --model vgg16 --data galaxy10 --quick --image-size 64 --epochs 3 --batch-size 30 \
    --optimizer sgd --lr 0.01
run galaxy10-resnet50-quick --model resnet50_galaxy_article --data galaxy10 --quick --image-size 64 --epochs 3 \
    --batch-size 30 --optimizer adam --lr 1e-3 --augment
run fmnist-article-resnet50 --model resnet50_keras_article --data fashion-mnist --data-root "$data" --epochs 10 \
    --batch-size 128 --optimizer adam --lr 1e-3
