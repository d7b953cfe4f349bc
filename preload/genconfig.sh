#!/bin/sh
# Check the site settings against settings.tsv (kind, default, bounds) and write them as C
# definitions.
# Usage: genconfig.sh OUT [NAME=value ...]
#   A setting not given takes its default from settings.tsv; a name not in it is an error.
# OUT is replaced only when its content changes, so a change of settings rebuilds the
# library and an unchanged one does not.
set -euf  # -f: no globbing of values split on ',' or '|'
table=$(dirname "$0")/settings.tsv
out=$1
shift
# the output is renamed over: never a device or anything else that is not a file
if [ -e "$out" ] && [ ! -f "$out" ]; then echo "genconfig.sh: $out is not a regular file" >&2; exit 1; fi

fail() { echo "preload/Makefile: bad $1='$2': $3" >&2; exit 1; }

is_uint() { case $1 in ''|*[!0-9]*|0?*) return 1;; *) return 0;; esac; }
is_name() { case $1 in ''|[0-9]*|*[!A-Za-z0-9_]*) return 1;; *) return 0;; esac; }
has_ctrl() { printf '%s' "$1" | LC_ALL=C grep -q '[[:cntrl:]]'; }
# C string literal body: escape backslash and double quote.
cstr() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'; }

known() { grep -q "^$1[[:space:]]" "$table"; }

# check NAME KIND BOUNDS VALUE: the value rules of each kind (package.py's _check mirrors them)
check() {
  lo=${3%%..*} hi=${3##*..}
  case $2 in
    uint)
      is_uint "$4" && [ ${#4} -le ${#hi} ] && [ "$4" -ge "$lo" ] && [ "$4" -le "$hi" ] \
        || fail "$1" "$4" "must be a whole number $lo..$hi" ;;
    host)
      case $4 in *[!A-Za-z0-9.:_-]*) fail "$1" "$4" "must be a host name, IPv4 or IPv6 address";; esac
      [ ${#4} -ge "$lo" ] && [ ${#4} -le "$hi" ] || fail "$1" "$4" "must be $lo..$hi characters long" ;;
    hosts)
      [ ${#4} -ge "$lo" ] && [ ${#4} -le "$hi" ] || fail "$1" "$4" "must be $lo..$hi characters long"
      ! printf '%s' "$4" | LC_ALL=C grep -q '[^][A-Za-z0-9.:_,-]' \
        || fail "$1" "$4" "may hold only host names, IPv4 or IPv6 addresses, ':' ports, '[' ']' and ','"
      case $4 in ,*|*,|*,,*) fail "$1" "$4" "has an empty entry";; esac
      oldifs=$IFS; IFS=,; n=0
      for item in $4; do
        n=$((n + 1))
        port=
        case $item in
          \[*\]:*) host=${item%%]:*}; host=${host#[}; port=${item#*]:} ;;
          *[][]*) fail "$1" "$4" "'$item': an IPv6 address with a port is written [address]:port" ;;
          *:*:*) host=$item ;;
          *:*) host=${item%:*}; port=${item#*:} ;;
          *) host=$item ;;
        esac
        case $host in ''|*[][]*) fail "$1" "$4" "'$item' names no host";; esac
        [ ${#host} -le 253 ] || fail "$1" "$4" "'$item': a host is at most 253 characters long"
        [ -z "$port" ] && [ "${item%:}" = "$item" ] || { is_uint "$port" && [ ${#port} -le 5 ] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ]; } \
          || fail "$1" "$4" "'$item': the port must be a whole number 1..65535"
      done
      IFS=$oldifs
      [ $n -le 16 ] || fail "$1" "$4" "lists more than 16 collectors" ;;
    envname)
      is_name "$4" || fail "$1" "$4" "must be an environment variable name" ;;
    envnames)
      oldifs=$IFS; IFS=,
      for item in $4; do
        is_name "$item" || fail "$1" "$4" "'$item' is not an environment variable name"
      done
      IFS=$oldifs ;;
    choice)
      oldifs=$IFS; IFS='|'; ok=no
      for item in $3; do [ "$4" = "$item" ] && ok=yes; done
      IFS=$oldifs
      [ $ok = yes ] || fail "$1" "$4" "must be one of $3" ;;
    yesno)
      case $4 in yes|no) ;; *) fail "$1" "$4" "must be yes or no";; esac ;;
    path)
      case $4 in /*) ;; *) fail "$1" "$4" "must be an absolute path";; esac
      case $4 in *[!A-Za-z0-9._+/-]*) fail "$1" "$4" "may hold only A-Z a-z 0-9 . _ - + /";; esac
      [ ${#4} -ge "$lo" ] && [ ${#4} -le "$hi" ] || fail "$1" "$4" "must be $lo..$hi characters long" ;;
    regexps)
      ! has_ctrl "$4" || fail "$1" "$4" "control characters are not allowed" ;;
    *)
      echo "$table: unknown kind '$2' of $1" >&2; exit 1 ;;
  esac
}

# The settings given, as given_NAME variables (the value is never evaluated as code).
for arg; do
  name=${arg%%=*}
  case $arg in *=*) ;; *) echo "genconfig.sh: expected NAME=value, got '$arg'" >&2; exit 1;; esac
  is_name "$name" && known "$name" || { echo "preload/Makefile: unknown setting $name" >&2; exit 1; }
  eval "given_$name=\${arg#*=}"
done

# Every setting: the given value or the default, checked, then set as a shell variable NAME.
while read -r name kind default bounds desc; do
  case $name in ''|'#'*) continue;; esac
  [ "$default" = - ] && default=
  eval "value=\${given_$name-\$default}"
  check "$name" "$kind" "$bounds" "$value"
  eval "$name=\$value"
done < "$table"

case $TRANSPORT in udp) udp=1;; *) udp=0;; esac
case $TRANSPORT in relay) relay=1;; *) relay=0;; esac
case $SEND_CMDLINE in yes) cmd=1;; *) cmd=0;; esac
case $ALLOW_SERVER_ENV in yes) senv=1;; *) senv=0;; esac
wl_init=""
oldifs=$IFS; IFS=,
for item in $ENV_WHITELIST; do wl_init="$wl_init\"$item\", "; done
IFS=$oldifs

tmp=$out.tmp.$$
cat > "$tmp" <<EOC
/* Generated by preload/genconfig.sh from the make variables: do not edit. */
#define OGRT_CFG_SERVER_HOST "$SERVER_HOST"
#define OGRT_CFG_SERVER_PORT $SERVER_PORT
#define OGRT_CFG_JOBID_VAR "$JOBID_VAR"
#define OGRT_CFG_TRANSPORT_UDP $udp
#define OGRT_CFG_TRANSPORT_RELAY $relay
#define OGRT_CFG_RELAY_SOCKET "$RELAY_SOCKET"
#define OGRT_CFG_CONNECT_TIMEOUT_MS $CONNECT_TIMEOUT_MS
#define OGRT_CFG_BACKOFF_SECONDS $BACKOFF_SECONDS
#define OGRT_CFG_SEND_CMDLINE $cmd
#define OGRT_CFG_ALLOW_SERVER_ENV $senv
#define OGRT_CFG_ENV_WHITELIST_TEXT "$ENV_WHITELIST"
#define OGRT_CFG_ENV_WHITELIST_INIT { ${wl_init}0 }
#define OGRT_CFG_FILTER_REGEXPS "$(cstr "$FILTER_REGEXPS")"
EOC
if cmp -s "$tmp" "$out"; then rm -f "$tmp"; else mv -f "$tmp" "$out"; fi
