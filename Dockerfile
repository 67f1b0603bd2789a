# Build the one binary, then run it on a small Debian image as an unprivileged user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml build.rs ./
COPY src ./src
COPY migrations ./migrations
COPY tests ./tests
# A workspace member (the load generator): cargo reads every member's manifest, even to build one.
COPY bench/loadgen ./bench/loadgen
RUN cargo build --release --locked --bin ticket-audit

FROM debian:bookworm-slim
# PostgreSQL client tools for running the reports in sql/ from inside the container.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /app ticket-audit
COPY --from=build /src/target/release/ticket-audit /usr/local/bin/ticket-audit
COPY sql /app/sql
WORKDIR /app
USER ticket-audit
ENV LISTEN_ADDR=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["ticket-audit"]
CMD ["serve"]
