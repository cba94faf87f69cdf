# A static ocmt in a scratch image. Build: docker build -t ocmt .
# Run all roles (the agent role needs the Docker socket to run user containers,
# and host networking to reach their ports, which are published on the host's
# loopback only):
#   docker run -d --network host -v ocmt-data:/data \
#     -v /var/run/docker.sock:/var/run/docker.sock ocmt
# Mounting the socket gives this container full control of the engine (root on
# the host): only the agent role needs it; run management and relay without it.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -tags 'osusergo netgo sqlite_omit_load_extension' \
    -ldflags '-s -w -linkmode external -extldflags -static' -o /out/ocmt . \
 && mkdir -p /out/data

FROM scratch
COPY --from=build /out/ocmt /ocmt
COPY --from=build --chown=65532:65532 /out/data /data
ENV OCMT_LISTEN=127.0.0.1:8080 OCMT_DATA_DIR=/data
EXPOSE 8080
ENTRYPOINT ["/ocmt"]
CMD ["serve"]
