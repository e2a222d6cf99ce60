set -u
t0=$(date +%s)
mkdir -p /tmp/matq && { [[ -x /tmp/matq/publish/Matq.Cli ]] || tar -C /tmp/matq -xJf .carry/matq.tar.xz; }
export MATQ_TORCH_LIB=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
STEPS="${STEPS:-1b-matquant-omniquant}" DEADLINE=$(( ${BUDGET:-588} - ($(date +%s) - t0) )) bash scripts/gpu/scale-session.sh 2>&1 | tail -14
