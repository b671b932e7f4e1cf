#!/usr/bin/env bash
# xltune inspect on model folders and configs: a tiny SDXL folder assembled from the reference
# models (every component's weights match its config), the full-size configs (parameter
# counts), --json, and a component whose weights do not fit its config (exit status 1).
#   inspect_model_test.sh XLTUNE TESTDATA WORKDIR
set -u
xltune=$1 data=$2 dir=$3
rm -rf "$dir" && mkdir -p "$dir/sdxl" "$dir/broken/text_encoder"
ln -s "$data/sdxl/unet_sdxl_test" "$dir/sdxl/unet"
ln -s "$data/sdxl/vae_b" "$dir/sdxl/vae"
ln -s "$data/clip/encoders/te1_a" "$dir/sdxl/text_encoder"
ln -s "$data/clip/encoders/te2_a" "$dir/sdxl/text_encoder_2"
fail=0
out=$("$xltune" inspect "$dir/sdxl" 2>&1); rc=$?
n=$(grep -c "tensors match$" <<<"$out")
if [ $rc -ne 0 ] || [ "$n" -ne 4 ]; then echo "FAIL tiny SDXL folder (exit $rc, $n components match)"; echo "$out" | grep -v "^  [a-z_0-9.]*  \["; fail=1
else echo "ok   tiny SDXL folder: 4 components, weights match"; fi

out=$("$xltune" inspect --config "$data/sdxl/full_size/unet/config.json" 2>&1)
grep -q "UNet2DConditionModel, 2,567,463,684 parameters in 1680 tensors" <<<"$out" && echo "ok   full-size UNet config" || { echo "FAIL full-size UNet: $(head -1 <<<"$out")"; fail=1; }
out=$("$xltune" inspect --config "$data/clip/encoders/full_size/text_encoder_2/config.json" 2>&1)
grep -q "694,659,840 parameters" <<<"$out" && echo "ok   full-size text_encoder_2 config" || { echo "FAIL text_encoder_2: $(head -1 <<<"$out")"; fail=1; }
out=$("$xltune" inspect --json --config "$data/sdxl/full_size/vae/config.json" 2>&1)
grep -q '"parameters": 83653863' <<<"$out" && echo "ok   full-size VAE config --json" || { echo "FAIL VAE json"; fail=1; }

cp "$data/clip/encoders/te1_b/config.json" "$dir/broken/text_encoder/config.json"
ln -s "$data/clip/encoders/te1_a/model.safetensors" "$dir/broken/text_encoder/model.safetensors"
out=$("$xltune" inspect "$dir/broken" 2>&1); rc=$?
if [ $rc -ne 1 ] || ! grep -q "wrong_shape" <<<"$out"; then echo "FAIL mismatched weights (exit $rc)"; fail=1; else echo "ok   mismatched weights named, exit 1"; fi
out=$("$xltune" inspect --config "$data/sdxl/vae_b/diffusion_pytorch_model.safetensors" 2>&1); rc=$?
[ $rc -eq 1 ] && echo "ok   --config on a non-JSON file: $(head -1 <<<"$out")" || { echo "FAIL --config non-JSON (exit $rc)"; fail=1; }
exit $fail
