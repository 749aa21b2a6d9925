# syntax=docker/dockerfile:1
#
# The flamewire image: `flamewire agent` by default (README, "Container image").
#   docker build -t flamewire .        (or: podman build -t flamewire .)
#
# Base: Node.js 26, the active LTS line (LTS from October 2026, security fixes until April 2029;
# the agent's Node dependencies and N-API need nothing newer), on Debian 13 "trixie", the
# current Debian stable and the Debian these Node images are built on. Every stage starts from
# the same image, so the addon is compiled against exactly the libbpf, libelf and zlib that it
# runs with, by the Node it runs on. x86_64 only for now: bpf/vmlinux/ has no arm64 header yet.
# test/image.test.ts checks this file with BuildKit's own parser and linter, and reproduces the
# runtime stage from a checkout to run it.
FROM node:26.10.0-trixie-slim AS base

# The build: the same as `npm ci` in a checkout. The package's install script
# (scripts/build.mjs) compiles the BPF programs into a skeleton, the skeleton into the addon,
# and the TypeScript into dist/. Its toolchain is scripts/system-deps.mjs's BUILD_DEPS.
FROM base AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      bpftool clang g++ libbpf-dev libelf-dev llvm make pkg-config python3 zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json tsconfig.json binding.gyp ./
COPY scripts ./scripts
COPY bpf ./bpf
COPY native ./native
COPY proto ./proto
COPY src ./src
RUN npm ci

# Production dependencies alone, without running any install script: the package's own would
# rebuild everything, and none of its dependencies needs one.
FROM base AS deps
WORKDIR /opt/flamewire
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts

# What runs: the shared libraries the addon links (libbpf.so.1, libelf.so.1, libz.so.1 in
# trixie's packages), the addon, the JavaScript, the .proto files the OTLP and Parca exporters
# load, and the production node_modules. The BPF objects are not needed: the skeleton compiled
# into the addon carries them. Runs as root: loading BPF programs takes capabilities (CAP_BPF,
# CAP_PERFMON …), and the capabilities a container is granted are effective for root only, as
# Kubernetes has no ambient capabilities; deploy/ grants those it needs and no more.
FROM base AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libbpf1 libelf1t64 zlib1g \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/flamewire
COPY package.json ./
COPY --from=deps /opt/flamewire/node_modules ./node_modules
COPY --from=build /src/build/Release/flamewire.node ./build/Release/
COPY --from=build /src/dist/src ./dist/src
COPY --from=build /src/proto ./proto
# A link, not a copy: cli.js finds the addon and package.json relative to its real path, and
# its #! line carries the V8 flags the agent runs with.
RUN ln -s /opt/flamewire/dist/src/cli.js /usr/local/bin/flamewire
ENTRYPOINT ["flamewire"]
CMD ["agent"]
