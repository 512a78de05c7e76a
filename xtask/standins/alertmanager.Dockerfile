# A stand-in for the official prom/alertmanager image where no registry can provide it (the
# tests): Debian's Alertmanager, the binary of the host's prometheus-alertmanager package (the
# set-up installs it; Debian 12: 0.25), with wget for the health check, run the way the official
# image runs it (entrypoint /bin/alertmanager, as nobody, data in /alertmanager, the same
# default command). The Debian build reads its notification templates from
# /usr/share/prometheus/alertmanager.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends wget && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /alertmanager /etc/alertmanager && chown nobody:nogroup /alertmanager
COPY prometheus-alertmanager /bin/alertmanager
COPY alertmanager-templates/ /usr/share/prometheus/alertmanager/
USER nobody
WORKDIR /alertmanager
EXPOSE 9093
ENTRYPOINT ["/bin/alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
