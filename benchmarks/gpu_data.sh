#!/usr/bin/env bash
# The real data benchmarks/gpu.sh reads, copied into .gpu_data/ inside the checkout (ignored by git; named in the
# device call's `carry`): the device machine gets the working tree only, not ../shared/data beside it.
#   .gpu_data/wikitext-2/wiki.{train,valid,test}.tokens   the budget recipe's corpus, in the release layout
#                                                          (the .raw files are left behind: the reader takes .tokens)
#   .gpu_data/glue/{CoLA,SST-2,MRPC,STS-B,RTE,WNLI}/{train,dev,test}.tsv   the GLUE arms' tasks (SST-2 a real folder,
#                                                          not the release's link); tests/gpu reads the same tree
# gpu.sh points LIT_LM_DATA at .gpu_data, so tests/conftest.py's data_root finds both.
#   bash benchmarks/gpu_data.sh [SHARED_DATA]      # default: $LIT_LM_DATA or ../shared/data beside the checkout
set -euo pipefail
cd "$(dirname "$0")/.."
src="${1:-${LIT_LM_DATA:-../shared/data}}"
dst=.gpu_data
[ -d "$src/wikitext-2" ] && [ -d "$src/glue" ] || { echo "gpu_data.sh: $src holds no wikitext-2/ and glue/" >&2; exit 1; }

rm -rf "$dst" && mkdir -p "$dst/wikitext-2"
cp "$src"/wikitext-2/wiki.{train,valid,test}.tokens "$dst/wikitext-2/"
for task in CoLA SST-2 MRPC STS-B RTE WNLI; do
  from="$src/glue/$task"
  [ -d "$from" ] || from="$src/$task"  # SST-2 in the release tree is a link to ../SST-2 (or a file naming it)
  mkdir -p "$dst/glue/$task"
  cp "$from"/{train,dev,test}.tsv "$dst/glue/$task/"
done
chmod -R u+w "$dst"  # the shared copy is read-only; a rerun must be able to delete this one
du -sh "$dst"/wikitext-2 "$dst"/glue
echo "carry total (.whl + .gpu_data): $(du -csb .whl "$dst" 2>/dev/null | tail -1 | cut -f1) bytes (limit: 64 MiB = 67108864 with the tree)"
