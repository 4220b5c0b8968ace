#!/usr/bin/env bash
# A CD pipeline's deploy step: roll out a new version of a service through its shifter Canary and
# turn the Canary's verdict into the pipeline's result.
#
#   cd-pipeline.sh [options] CANARY VERSION IMAGE
#
#   CANARY   the Canary (and apex Service) to roll out, e.g. web
#   VERSION  the new version's name, a DNS label such as v3; its Service is CANARY-VERSION
#   IMAGE    the container image of the new version
#
# Steps: render the version template (${VERSION} and ${IMAGE} replaced), apply it, wait until its
# Deployments are ready, point the Canary at the new Service (`kubectl shift start`), then block on
# `kubectl shift wait`.
#
# Exit codes:
#   0  promoted: the new version takes all traffic
#   1  rolled back: traffic is back on the stable version; the Canary's status says why
#   2  no verdict within --timeout (or the Canary could not be read); the rollout is aborted, sending
#      traffic back to the stable version, unless --keep-on-timeout
#   3  the rollout never started: bad arguments, a missing tool or Canary, apply failed, or the new
#      Deployments did not become ready (no traffic was shifted)
#
# Options:
#   -n, --namespace NS        namespace of the Canary and the version (default: shop)
#   -t, --template FILE       version template (default: app/version.yaml beside this script)
#       --timeout DURATION    how long to wait for a verdict, e.g. 15m (default: 10m)
#       --ready-timeout DUR   how long the new Deployments may take to become ready (default: 5m)
#       --keep-on-timeout     leave the rollout running when the verdict does not come in time
#   -h, --help                show this help
#
# Needs kubectl and the `kubectl shift` plugin (kubectl-shift on PATH) pointed at the cluster.
set -euo pipefail
# Replacement text in ${var//pattern/text} is literal, whatever the bash version.
shopt -u patsub_replacement 2>/dev/null || true

say() { printf 'cd-pipeline: %s\n' "$*" >&2; }
fail() {
    local code=$1
    shift
    say "$*"
    exit "$code"
}
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

here=$(cd "$(dirname "$0")" && pwd)
namespace=shop
template="$here/app/version.yaml"
timeout=10m
ready_timeout=5m
keep_on_timeout=false
positional=()

while [ $# -gt 0 ]; do
    case $1 in
        -n | --namespace) [ $# -ge 2 ] || fail 3 "$1 needs a value"; namespace=$2; shift 2 ;;
        -t | --template) [ $# -ge 2 ] || fail 3 "$1 needs a value"; template=$2; shift 2 ;;
        --timeout) [ $# -ge 2 ] || fail 3 "$1 needs a value"; timeout=$2; shift 2 ;;
        --ready-timeout) [ $# -ge 2 ] || fail 3 "$1 needs a value"; ready_timeout=$2; shift 2 ;;
        --keep-on-timeout) keep_on_timeout=true; shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; positional+=("$@"); break ;;
        -*) fail 3 "unknown option $1 (see --help)" ;;
        *) positional+=("$1"); shift ;;
    esac
done
[ ${#positional[@]} -eq 3 ] || fail 3 "expected CANARY VERSION IMAGE, got ${#positional[@]} argument(s) (see --help)"
canary=${positional[0]}
version=${positional[1]}
image=${positional[2]}

dns_label='^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'
[[ $canary =~ $dns_label ]] || fail 3 "CANARY '$canary' is not a Kubernetes name; use lowercase letters, digits and '-'"
[[ $version =~ $dns_label ]] || fail 3 "VERSION '$version' is not a DNS label; use lowercase letters, digits and '-', e.g. v3"
[[ $namespace =~ $dns_label ]] || fail 3 "--namespace '$namespace' is not a namespace name"
[[ $image =~ ^[A-Za-z0-9][A-Za-z0-9._/:@-]*$ ]] || fail 3 "IMAGE '$image' is not an image reference, e.g. nginxinc/nginx-unprivileged:1.27-alpine"
[[ $timeout =~ ^[0-9]+(s|m|h)$ ]] || fail 3 "--timeout '$timeout' needs a unit, e.g. 90s, 15m or 1h"
[[ $ready_timeout =~ ^[0-9]+(s|m|h)$ ]] || fail 3 "--ready-timeout '$ready_timeout' needs a unit, e.g. 90s or 5m"
[ -r "$template" ] || fail 3 "template $template cannot be read (--template FILE)"
service="$canary-$version"

command -v kubectl >/dev/null 2>&1 || fail 3 "kubectl is not on PATH"
kubectl shift --help >/dev/null 2>&1 \
    || fail 3 "the kubectl shift plugin is missing: put kubectl-shift on PATH (cargo install --path shifter)"

# The Canary must exist: the first version and the Canary are set up once, by hand or by GitOps.
if ! current=$(kubectl -n "$namespace" get canary "$canary" -o jsonpath='{.status.stable}' 2>&1); then
    fail 3 "cannot read canary $namespace/$canary: $current
  create it first, e.g. kubectl apply -f $here/app/canary.yaml"
fi
if [ "$current" = "$service" ]; then
    say "$service already serves all of $canary's traffic; nothing to roll out"
    exit 0
fi

# Render the version: replace exactly the two placeholders, refuse any other ${UPPERCASE} one.
manifest=$(<"$template")
manifest=${manifest//'${VERSION}'/$version}
manifest=${manifest//'${IMAGE}'/$image}
if [[ $manifest =~ \$\{[A-Z_]+\} ]]; then
    fail 3 "$template has a placeholder this script does not fill: ${BASH_REMATCH[0]} (only \${VERSION} and \${IMAGE})"
fi

say "deploying $service ($image) in $namespace"
if ! applied=$(printf '%s\n' "$manifest" | kubectl -n "$namespace" apply -f - -o name); then
    fail 3 "kubectl apply of $template failed; no traffic was shifted"
fi
printf '%s\n' "$applied" >&2
grep -qx "service/$service" <<<"$applied" \
    || fail 3 "$template must create the Service $service (CANARY-VERSION); it created: $(tr '\n' ' ' <<<"$applied")"

while read -r object; do
    case $object in
        deployment.apps/*)
            say "waiting up to $ready_timeout for $object to be ready"
            kubectl -n "$namespace" rollout status "$object" --timeout "$ready_timeout" >&2 \
                || fail 3 "$object did not become ready; no traffic was shifted (kubectl -n $namespace describe $object)"
            ;;
    esac
done <<<"$applied"

say "starting the rollout of $service (stable: ${current:-as in spec.stable})"
kubectl shift start "$canary" --canary "$service" -n "$namespace" >&2 \
    || fail 3 "could not point canary $namespace/$canary at $service"

say "waiting up to $timeout for the verdict (follow it with: kubectl shift status $canary -n $namespace --watch)"
if kubectl shift wait "$canary" --timeout "$timeout" -n "$namespace"; then
    verdict=0
else
    verdict=$?
fi

case $verdict in
    0)
        say "promoted: $service takes all of $canary's traffic"
        exit 0
        ;;
    1)
        say "rolled back: $canary's traffic is back on its stable version; why:"
        kubectl shift status "$canary" -n "$namespace" >&2 || true
        exit 1
        ;;
    2)
        if [ "$keep_on_timeout" = true ]; then
            say "no verdict within $timeout; the rollout of $service goes on (--keep-on-timeout)"
        else
            say "no verdict within $timeout; aborting so traffic returns to the stable version"
            kubectl shift abort "$canary" -n "$namespace" >&2 \
                || say "the abort failed too: check the cluster, then run kubectl shift abort $canary -n $namespace"
        fi
        exit 2
        ;;
    *)
        fail "$verdict" "kubectl shift wait exited $verdict"
        ;;
esac
