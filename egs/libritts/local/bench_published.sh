#!/usr/bin/env bash
# Benchmark every published tokenizer found in a folder beside the classical codecs, in one report.
#
#   local/bench_published.sh --ckpt_dir ckpt/published
#
# <ckpt_dir> holds one sub-folder per checkpoint; its kind is recognised from the files inside
# (`voxtok bench discover`): a VoxTok folder (metadata.json), a transformers EnCodec / DAC / Mimi /
# X-codec folder, a transformers HuBERT / WavLM / wav2vec2 folder (discrete SSL units, k-means
# fitted on <data_dir>/train), a SpeechTokenizer release (config.json + SpeechTokenizer.pt), a SNAC
# folder (config.json + pytorch_model.bin), an EnCodec state dict (*.th) or DAC weights (*.pth).
# Nothing is downloaded. Results are cached per system in <out>, so adding a checkpoint later only
# evaluates the new one; pass the main job's bench folder as --out to extend that report.
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh

ckpt_dir=""          # one sub-folder per published checkpoint (required)
data_dir=data        # Kaldi data dirs <data_dir>/{train,test}
out=exp/bench_published
baselines="identity codec2_1200 codec2_3200 opus_6k opus_12k"  # systems benchmarked beside them
nj=2                 # systems evaluated in parallel
device=cpu
ssl_layer=""         # layer(s) of SSL models, e.g. 6 or 3+7+12 (default: half their depth)
ssl_k=500            # k-means clusters of SSL models
probe_preset=quick   # quick | dasb
bench_args=""        # extra `voxtok bench run` options, e.g. "--max-test 20 --no-asr"

help_message="Usage: $0 --ckpt_dir DIR [options]
  e.g.: $0 --ckpt_dir ckpt/published --out exp/mini/bench --bench_args \"--max-test 12\"
Options:
  --ckpt_dir DIR       folder with one sub-folder per published checkpoint (required)
  --data_dir DIR       Kaldi data dirs: DIR/test is scored, DIR/train feeds probes, LM, k-means (default $data_dir)
  --out DIR            benchmark output folder (default $out)
  --baselines \"A B\"    systems benchmarked beside them (default: $baselines)
  --nj N               systems in parallel (default $nj)
  --device DEV         cpu or cuda (default $device)
  --ssl_layer N        layer(s) of SSL models, e.g. 6 or 3+7+12 (default: half their depth)
  --ssl_k K            k-means clusters of SSL models (default $ssl_k)
  --probe_preset P     quick or dasb (default $probe_preset)
  --bench_args ARGS    extra options of voxtok bench run (see: python -m voxtok.cli bench run --help)"

. utils/parse_options.sh

if [ -z "$ckpt_dir" ]; then
  echo "$0: --ckpt_dir is required (see --help)" >&2
  exit 2
fi
discover_args=(--ssl-k "$ssl_k")
[ -n "$ssl_layer" ] && discover_args+=(--ssl-layer "$ssl_layer")
# One spec per line; the folders it cannot place are named on stderr.
mapfile -t published < <(python -m voxtok.cli bench discover "$ckpt_dir" "${discover_args[@]}")
if [ "${#published[@]}" -eq 0 ]; then
  echo "$0: no published checkpoint recognised in $ckpt_dir" >&2
  exit 2
fi
echo "$0: ${#published[@]} published tokenizer(s): ${published[*]}"
# shellcheck disable=SC2086
python -m voxtok.cli bench run --data "$data_dir/test" --train "$data_dir/train" -o "$out" --nj "$nj" \
  --device "$device" --probe-preset "$probe_preset" --systems $baselines "${published[@]}" $bench_args
echo "$0: report: $out/report.md"
