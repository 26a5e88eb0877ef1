# syntax=docker/dockerfile:1
#
# sessiongate: a static binary on distroless, running as non-root.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t sessiongate .
#   docker run --rm -p 8080:8080 -p 9090:9090 \
#     -e SESSIONGATE_UPSTREAM_URL=http://rocketchat:3000 \
#     -e SESSIONGATE_REDIS_URL=redis://redis:6379/0 sessiongate
#
# Health: the final image has no shell and no curl; `sessiongate healthcheck`
# asks the admin listener's /readyz itself (exit 0 when ready). Kubernetes
# probes GET :9090/healthz (liveness) and GET :9090/readyz (readiness) instead.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Dependencies first, so code changes do not refetch them.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# The same flags as the `go build` line of .ci/run, so CI proves this binary
# builds: static (no cgo), no local paths, no symbol tables.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/sessiongate .

# distroless/static: CA certificates (for https:// upstreams and rediss://),
# tzdata, /etc/passwd with the nonroot user (65532), nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sessiongate /sessiongate
USER nonroot:nonroot
# 8080: clients (listen); 9090: probes and metrics (admin.listen).
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/sessiongate", "healthcheck"]
ENTRYPOINT ["/sessiongate"]
