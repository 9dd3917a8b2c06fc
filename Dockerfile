# syntax=docker/dockerfile:1
# Switchboard images: one build stage compiles every binary statically
# (CGO_ENABLED=0), and one small final stage per binary holds only that
# binary on distroless/static (no shell, no libc, runs as nonroot).
#
#   docker build --target ingress -t switchboard/ingress .
#
# Targets: ingress, router-worker, egress, modelsim, topics, redrive,
# loadtest. docker-compose.yml builds them. With no shell in the images,
# health probes run the service binary itself: `ingress healthcheck
# http://127.0.0.1:8080/readyz` (see internal/healthcheck).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ \
      ./ingress ./router-worker ./egress ./loadtest ./cmd/modelsim ./cmd/topics ./cmd/redrive

FROM gcr.io/distroless/static-debian12:nonroot AS ingress
COPY --from=build /out/ingress /usr/local/bin/ingress
EXPOSE 8080 8083
ENTRYPOINT ["/usr/local/bin/ingress"]

FROM gcr.io/distroless/static-debian12:nonroot AS router-worker
COPY --from=build /out/router-worker /usr/local/bin/router-worker
COPY backends.yaml /etc/switchboard/backends.yaml
EXPOSE 8082
ENTRYPOINT ["/usr/local/bin/router-worker"]

FROM gcr.io/distroless/static-debian12:nonroot AS egress
COPY --from=build /out/egress /usr/local/bin/egress
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/egress"]

FROM gcr.io/distroless/static-debian12:nonroot AS modelsim
COPY --from=build /out/modelsim /usr/local/bin/modelsim
EXPOSE 8090
ENTRYPOINT ["/usr/local/bin/modelsim"]

FROM gcr.io/distroless/static-debian12:nonroot AS topics
COPY --from=build /out/topics /usr/local/bin/topics
ENTRYPOINT ["/usr/local/bin/topics"]

FROM gcr.io/distroless/static-debian12:nonroot AS redrive
COPY --from=build /out/redrive /usr/local/bin/redrive
ENTRYPOINT ["/usr/local/bin/redrive"]

FROM gcr.io/distroless/static-debian12:nonroot AS loadtest
COPY --from=build /out/loadtest /usr/local/bin/loadtest
ENTRYPOINT ["/usr/local/bin/loadtest"]
