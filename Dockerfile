# syntax=docker/dockerfile:1
# Release build in a full Rust image, run in a slim Debian image as a non-root user.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so that editing the code does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src src
COPY migrations migrations
# Name lists are embedded in the binary at compile time.
COPY data data
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin socialnet

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home socialnet
COPY --from=build /src/target/release/socialnet /usr/local/bin/socialnet
USER socialnet
ENV BIND=0.0.0.0:8000 \
    RUST_LOG=info
EXPOSE 8000
STOPSIGNAL SIGTERM
ENTRYPOINT ["socialnet"]
CMD ["serve"]
