# Puts the repository's virtualenv first on PATH (when it exists) and keeps every run offline.
VOXTOK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[ -x "$VOXTOK_ROOT/.venv/bin/python" ] && export PATH="$VOXTOK_ROOT/.venv/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
