#!/usr/bin/env bash
# Builds the OpenTelemetry eBPF profiler (the peer of bench/peers.ts) from its module source, once
# per version, into bench/.peers/ebpf-profiler-<version>/ (git-ignored). Prints the binary's path
# on success; a second run with the binary present only prints it.
#
#   bench/build-otel-profiler.sh <version>
#
# The source comes from the Go module proxy (go mod download); the module's dependencies and the
# Go build cache are kept under bench/.peers/ too. Its BPF programs are compiled with clang-19.
# One change is made to the copied source: the agent stops when it cannot raise RLIMIT_MEMLOCK to
# infinity, which some machines (containers, VMs) do not allow although BPF memory is charged to
# memory cgroups since Linux 5.11; the patch makes the failed raise a no-op.
set -euo pipefail

version=${1:?usage: build-otel-profiler.sh <version>}
here=$(cd "$(dirname "$0")" && pwd)
peers="$here/.peers"
out="$peers/ebpf-profiler-$version"
bin="$out/ebpf-profiler"
if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi

for tool in go clang-19 llvm-link-19 llc-19 llvm-strip-19; do
  command -v "$tool" >/dev/null || { echo "build-otel-profiler: $tool not found" >&2; exit 1; }
done

mkdir -p "$peers"
export GOMODCACHE="$peers/gomod" GOCACHE="$peers/gocache" GOFLAGS=-modcacherw GOTOOLCHAIN=local
export CGO_ENABLED=0

# The module's source: a Dir in the module cache (read-only there, hence the copy).
json=$(cd "$peers" && go mod download -json "go.opentelemetry.io/ebpf-profiler@$version" 2>&1) || true
dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")
if [[ -z "$dir" || ! -d "$dir" ]]; then
  why=$(sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
  echo "build-otel-profiler: go mod download gave no source: ${why:-$(tail -n1 <<<"$json")}" >&2
  exit 1
fi

src="$out/src"
rm -rf "$src"
mkdir -p "$out"
cp -r "$dir" "$src"
chmod -R u+w "$src"
# Module zips keep no execute bits; its BPF make runs a script of its own.
find "$src" -name '*.sh' -exec chmod +x {} +

# The memlock patch (see the top of this file).
rl="$src/rlimit/rlimit.go"
grep -q 'failed to set temporary rlimit' "$rl" || { echo "build-otel-profiler: $rl changed, cannot patch" >&2; exit 1; }
sed -i 's|return nil, fmt.Errorf("failed to set temporary rlimit: %w", err)|return func() { _ = fmt.Sprint(err) }, nil|' "$rl"

# Its BPF object: the generated errors.h ships with the source; keep make from regenerating it.
touch "$src/support/ebpf/errors.h"
rm -f "$src/support/ebpf/tracer.ebpf.amd64" "$src/support/ebpf/tracer.ebpf.arm64"
PATH="/usr/lib/llvm-19/bin:$PATH" make -s -C "$src/support/ebpf" BPF_CLANG=clang-19 BPF_LINK=llvm-link-19 LLC=llc-19 STRIP=llvm-strip-19 CLANG_FORMAT=true >&2

# Its agent, as its Makefile builds it (the BPF object is embedded).
(cd "$src" && go build -tags osusergo,netgo -o "$bin.tmp" .) >&2
mv "$bin.tmp" "$bin"
echo "$bin"
