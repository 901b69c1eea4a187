#!/usr/bin/env bash
# The GPU recipe behind the embedded default model, as one command on any CUDA machine:
#   1. a throughput sweep (tokens/s, MFU) of the small and base presets,
#   2. the default model's training run on the full MAESTRO v3.0.0 train split, fitted to a wall time,
#   3. validation and test NLL of its best checkpoint,
#   4. the checkpoint, run record, evaluation and log collected in OUT_DIR.
#
#   python scripts/prepare_data.py --maestro_zip maestro-v3.0.0-midi.zip --out data/maestro-v3.0.0.tokens.npz
#   bash scripts/gpu_recipe.sh OUT_DIR [TRAIN_MINUTES]
#
# Needs torch, transformers, accelerate and numpy only (no datasets, no symusic): the token pack
# carries the data. The training run is the recipe hf_music/assets/recipes/default_model.json
# (`--config default_model`), with the pack, the budget and the output folder of this script.
# Several GPUs: ACCELERATE_CONFIG=scripts/accelerate/multi_gpu.yaml (the batch is per GPU). Each
# stage has its own time limit, and a failed stage does not stop the next ones. The environment
# variables below shrink it for a rehearsal on a CPU: MODEL, BLOCK and BATCH, when set, override
# the recipe's config_overrides, block_size and batch_size; COMPILE= (empty) turns compilation off.
# The embedded default model ran with TRAIN_MINUTES 5.0 (the recipe's max_minutes); 4.5 is this
# script's default budget.
set -uo pipefail
OUT=${1:?usage: gpu_recipe.sh OUT_DIR [TRAIN_MINUTES]}
MINUTES=${2:-4.5}
PACK=${PACK:-data/maestro-v3.0.0.tokens.npz}
RUN=${RUN:-runs/gpu_default}
ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-scripts/accelerate/single_gpu.yaml}
PRECISION=${PRECISION:-bf16}
COMPILE=${COMPILE---compile}
SWEEP=${SWEEP:-base:32 small:64}
SWEEP_BLOCK=${SWEEP_BLOCK:-2048}
SWEEP_SECONDS=${SWEEP_SECONDS:-110}
TRAIN=(--config default_model --tokens_file "$PACK" --max_minutes "$MINUTES" --mixed_precision "$PRECISION"
    --output_dir "$RUN")
[ -n "${MODEL:-}" ] && TRAIN+=(--config_overrides "$MODEL")
[ -n "${BLOCK:-}" ] && TRAIN+=(--block_size "$BLOCK")
[ -n "${BATCH:-}" ] && TRAIN+=(--batch_size "$BATCH")
[ -z "$COMPILE" ] && TRAIN+=(--no-compile)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
stage() { echo; echo "=== $(date -u +%H:%M:%S) $*"; }

stage "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
python -c "import torch, transformers, accelerate; print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'cuda', torch.cuda.is_available())"
python -c "from hf_music.token_pack import TokenPack; p = TokenPack.load('$PACK'); print('$PACK: checksums match;', {s: int(p.tokens[s].size) for s in p.splits})" || exit 1

stage "1. throughput sweep: $SWEEP"
# shellcheck disable=SC2086
timeout "$SWEEP_SECONDS" python scripts/benchmark_train.py --sweep $SWEEP --block_size "$SWEEP_BLOCK" \
    --mixed_precision "$PRECISION" $COMPILE --dropout 0 --steps 10 --json "$OUT/sweep.json" || echo "sweep failed or timed out"

stage "2. training for $MINUTES minutes"
rm -rf "$RUN"
timeout "$(python -c "print(int($MINUTES * 60 + 120))")" accelerate launch --config_file "$ACCELERATE_CONFIG" \
    scripts/train.py "${TRAIN[@]}" || echo "training failed or timed out"

stage "3. evaluation of the best checkpoint"
timeout 120 python scripts/evaluate.py --model "$RUN/best" --tokens_file "$PACK" --split validation test \
    --batch_size 16 --json "$OUT/evaluation.json" --save_to_record || echo "evaluation failed or timed out"

stage "4. collecting"
cp "$RUN/run_record.json" "$OUT/run_record.json" 2>/dev/null
tar czf "$OUT/best.tgz" -C "$RUN" best && ls -la "$OUT"
