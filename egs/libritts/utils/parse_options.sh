#!/usr/bin/env bash
# Kaldi/ESPnet-style option parsing, sourced by a recipe after it sets its defaults:
#   stage=0; nj=2; . utils/parse_options.sh
# Each "--some_name VALUE" or "--some-name=VALUE" sets the shell variable some_name, which must
# already exist (so typos fail loudly). "--help" prints $help_message. "--config FILE" sources
# FILE first. Positional arguments are left in "$@".

__po_usage() { echo "${help_message:-usage: $0 [--option value] ...}"; }

__po_rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) __po_usage; exit 0 ;;
    --config) [ $# -ge 2 ] || { echo "$0: --config needs a file" >&2; exit 2; }
              # shellcheck disable=SC1090
              . "$2"; shift 2 ;;
    --*=*) __po_name="${1%%=*}"; __po_value="${1#*=}"; shift ;;
    --*)   [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 2; }
           __po_name="$1"; __po_value="$2"; shift 2 ;;
    *) __po_rest+=("$1"); shift; continue ;;
  esac
  case "${__po_name:-}" in
    "") continue ;;
  esac
  __po_var="${__po_name#--}"; __po_var="${__po_var//-/_}"
  if ! declare -p "$__po_var" >/dev/null 2>&1; then
    echo "$0: unknown option --${__po_var} (see --help)" >&2; exit 2
  fi
  # Booleans stay the words true/false so recipes can test them with [ "$x" = true ].
  if [ "${!__po_var}" = true ] || [ "${!__po_var}" = false ]; then
    case "$__po_value" in true|false) ;; *)
      echo "$0: --${__po_var} takes true or false, got '$__po_value'" >&2; exit 2 ;;
    esac
  fi
  printf -v "$__po_var" '%s' "$__po_value"
  __po_name=""
done
set -- "${__po_rest[@]+"${__po_rest[@]}"}"
unset __po_rest __po_name __po_value __po_var
