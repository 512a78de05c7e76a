# A stand-in for the official nats:2.12-alpine where no registry can provide it (the tests):
# the nats-server the set-up installed, with wget for the health check, as the official image
# runs it (entrypoint nats-server).
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends wget && rm -rf /var/lib/apt/lists/*
COPY nats-server /usr/local/bin/nats-server
EXPOSE 4222 8222
ENTRYPOINT ["/usr/local/bin/nats-server"]
