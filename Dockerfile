# syntax=docker/dockerfile:1
# The operator's image; worker pods run the same image as their dispatcher sidecar.
#   docker build -t <registry>/switchyard:$(version) .
# Build stage: the release profile of Cargo.toml (fat LTO, size-optimised), stripped.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
# Only what the package needs: the manifest declares the benches, so they come along.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin switchyard \
 && strip target/release/switchyard \
 && install -D -m 0755 target/release/switchyard /out/switchyard

# Runtime: glibc, CA certificates and nothing else (no shell, no package manager); user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/switchyard /usr/local/bin/switchyard
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["run"]
